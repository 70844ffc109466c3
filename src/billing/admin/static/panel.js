// The delete dialog's question in the panel's language: SQLAdmin's main.js writes an English
// one when the dialog opens; this handler runs after it and writes the page's own.
$(document).on('shown.bs.modal', '#modal-delete', function (event) {
  var question = $(this).data('question');
  var pk = $(event.relatedTarget).data('pk');
  if (question) {
    $('#modal-delete-text').text(question.replace('{id}', pk === undefined ? '' : pk).replace(/\s+\?/, '?').trim());
  }
});

// The sidebar's menu button is named in the panel's language (SQLAdmin's says "Toggle
// navigation" in its layout).
$(function () {
  $('.navbar-toggler').attr('aria-label', $('meta[name=billing-menu-label]').attr('content'));
});
