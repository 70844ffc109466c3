-- wrk script of bench/http_load.py: one scenario per run, chosen by the arguments after `--`:
--
--   requests FILE THREADS CYCLE THINK_MS  each line of FILE is "METHOD\tPATH\tTOKEN\tBODY" ("-" = none);
--                                  thread i of n takes the lines i, i+n, …; with CYCLE = 1 it
--                                  goes round them again, with 0 each line is sent once and the
--                                  thread stops when its lines are used up ("exhausted")
--   checkout FILE THREADS TARIFF THINK_MS a chain per viewer (a line of FILE is a token): invoice →
--                                  payment → pay at the sandbox (notify=0) → confirm; needs one
--                                  connection per thread (-t = -c), the chain's state is the
--                                  thread's
--
-- THINK_MS: the mean pause before each request of a connection (0: closed loop at full
-- speed). The pauses are drawn from an exponential distribution, so requests arrive as a
-- Poisson stream: equal pauses would keep the connections in step, sending bursts of
-- CLIENTS requests at once, and the p99 would measure the bursts, not the service.
-- done() prints one line "BENCH-JSON {…}" with the counts and the latency percentiles (µs).

local threads = {}
local counter = 0

function setup(thread)
  thread:set("index", counter)
  counter = counter + 1
  table.insert(threads, thread)
end

local mode, lines, position, cycle, think_ms
local tariff, step, token, invoice_id, payment_id, sandbox_id
-- Globals of each thread's Lua state, so that done() can read them with thread:get().
s2xx, s3xx, s4xx, s5xx, chains, exhausted = 0, 0, 0, 0, 0, 0

local function split(line)
  local fields = {}
  for field in (line .. "\t"):gmatch("([^\t]*)\t") do
    table.insert(fields, field)
  end
  return fields
end

function init(args)
  mode = args[1]
  local index = wrk.thread:get("index")
  local thread_count = tonumber(args[3])
  lines = {}
  local number = 0
  for line in io.lines(args[2]) do
    if number % thread_count == index then
      table.insert(lines, line)
    end
    number = number + 1
  end
  position = 0
  math.randomseed(os.time() * 1000 + index)
  if mode == "requests" then
    cycle = args[4] == "1"
    think_ms = tonumber(args[5]) or 0
    if cycle and #lines == 0 then  -- fewer lines than threads: every thread goes round all
      for line in io.lines(args[2]) do
        table.insert(lines, line)
      end
    end
  else
    tariff = args[4]
    think_ms = tonumber(args[5]) or 0
    step = "invoice"
  end
end

function delay()
  if think_ms == 0 then
    return 0
  end
  return -think_ms * math.log(1 - math.random())
end

local function headers_for(auth, with_json)
  local headers = {}
  if auth ~= "-" then
    headers["Authorization"] = "Bearer " .. auth
  end
  if with_json then
    headers["Content-Type"] = "application/json"
  end
  return headers
end

local function next_line()
  position = position + 1
  if position > #lines then
    if not cycle or #lines == 0 then
      return nil
    end
    position = 1
  end
  return lines[position]
end

local function requests_request()
  local line = next_line()
  if line == nil then
    exhausted = 1
    wrk.thread:stop()
    return wrk.format("GET", "/health")
  end
  local f = split(line)
  local body = f[4] ~= "-" and f[4] or nil
  return wrk.format(f[1], f[2], headers_for(f[3], body ~= nil), body)
end

local function checkout_request()
  if step == "invoice" then
    token = next_line()
    if token == nil then
      exhausted = 1
      wrk.thread:stop()
      return wrk.format("GET", "/health")
    end
    return wrk.format("POST", "/api/v1/invoices", headers_for(token, true),
      '{"tariff_id":"' .. tariff .. '","months":1}')
  elseif step == "payment" then
    return wrk.format("POST", "/api/v1/invoices/" .. invoice_id .. "/payments",
      headers_for(token, true), "{}")
  elseif step == "pay" then
    return wrk.format("POST", "/sandbox/checkout/" .. sandbox_id,
      { ["Content-Type"] = "application/x-www-form-urlencoded" }, "action=pay&notify=0")
  else
    return wrk.format("POST", "/api/v1/payments/" .. payment_id .. "/confirm",
      headers_for(token, false))
  end
end

function request()
  if mode == "requests" then
    return requests_request()
  end
  return checkout_request()
end

function response(status, headers, body)
  if status >= 500 then
    s5xx = s5xx + 1
  elseif status >= 400 then
    s4xx = s4xx + 1
  elseif status >= 300 then
    s3xx = s3xx + 1
  else
    s2xx = s2xx + 1
  end
  if mode ~= "checkout" then
    return
  end
  -- A failed step starts a new chain with the next viewer (counted above, not as a chain).
  if step == "invoice" then
    invoice_id = status == 201 and body:match('"id":"([%w%-]+)"') or nil
    step = invoice_id and "payment" or "invoice"
  elseif step == "payment" then
    payment_id = status == 201 and body:match('"id":"([%w%-]+)"') or nil
    sandbox_id = body:match('/checkout/([%w%-]+)')
    step = (payment_id and sandbox_id) and "pay" or "invoice"
  elseif step == "pay" then
    step = status < 400 and "confirm" or "invoice"
  else
    if status == 200 and body:find('"status":"succeeded"', 1, true) then
      chains = chains + 1
    end
    step = "invoice"
  end
end

function done(summary, latency, requests)
  local totals = { s2xx = 0, s3xx = 0, s4xx = 0, s5xx = 0, chains = 0, exhausted = 0 }
  for _, thread in ipairs(threads) do
    for name, _ in pairs(totals) do
      totals[name] = totals[name] + (tonumber(thread:get(name)) or 0)
    end
  end
  local e = summary.errors
  io.write(string.format(
    'BENCH-JSON {"requests":%d,"duration_us":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,'
      .. '"max_us":%d,"mean_us":%.1f,"connect_errors":%d,"read_errors":%d,"write_errors":%d,'
      .. '"timeouts":%d,"s2xx":%d,"s3xx":%d,"s4xx":%d,"s5xx":%d,"chains":%d,"exhausted":%d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max, latency.mean, e.connect, e.read, e.write, e.timeout,
    totals.s2xx, totals.s3xx, totals.s4xx, totals.s5xx, totals.chains, totals.exhausted))
end
