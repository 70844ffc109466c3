"""Payment methods viewers saved with a provider, and their consent to be charged."""
