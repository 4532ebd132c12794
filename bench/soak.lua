-- wrk script of bench/soak.py: POST the bodies of BODIES_FILE (one per line) in turn and tally every answer.
-- CONTENT_TYPE is their Content-Type (application/json by default).  At the end, done() prints one line,
-- "SOAK {json}": requests, answers by status, 200s whose body is not a JSON list, wrk's socket errors
-- (connect, read, write, timeout) and the latency percentiles in microseconds.

local content_type = os.getenv("CONTENT_TYPE") or "application/json"
local prepared = {} -- whole HTTP requests, formatted once per thread
local next_request = 0
local threads = {}

statuses = {} -- globals: done() collects them from every thread
bad_bodies = 0

function setup(thread)
  thread:set("id", #threads)
  threads[#threads + 1] = thread
end

function init(args)
  local path = assert(os.getenv("BODIES_FILE"), "BODIES_FILE is not set")
  for body in io.lines(path) do
    if #body > 0 then
      prepared[#prepared + 1] = wrk.format("POST", nil, { ["Content-Type"] = content_type }, body)
    end
  end
  assert(#prepared > 0, "no bodies in BODIES_FILE")
  next_request = (id * 7919) % #prepared -- threads start at different bodies
end

function request()
  next_request = next_request % #prepared + 1
  return prepared[next_request]
end

function response(status, headers, body)
  local key = tostring(status)
  statuses[key] = (statuses[key] or 0) + 1
  if status == 200 and body:sub(1, 1) ~= "[" then
    bad_bodies = bad_bodies + 1
  end
end

function done(summary, latency, requests)
  local by_status, bad = {}, 0
  for _, thread in ipairs(threads) do
    for status, count in pairs(thread:get("statuses")) do
      by_status[#by_status + 1] = string.format('"%s": %d', status, count)
    end
    bad = bad + thread:get("bad_bodies")
  end
  local e = summary.errors
  io.write(string.format(
    'SOAK {"requests": %d, "duration_us": %d, "statuses": [%s], "bad_bodies": %d, '
      .. '"socket_errors": {"connect": %d, "read": %d, "write": %d, "timeout": %d}, '
      .. '"latency_us": {"p50": %d, "p90": %d, "p99": %d, "max": %d, "mean": %.1f}}\n',
    summary.requests, summary.duration, "{" .. table.concat(by_status, "}, {") .. "}", bad,
    e.connect, e.read, e.write, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max, latency.mean
  ))
end
