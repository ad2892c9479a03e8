-- wrk script: POST /api/v1/tenant/heartbeat as one of N agents chosen at random, each beat with a fresh seq.
-- Keys are read from the file named by HB_KEYS (one API key per line).
local keys = {}
local counter = 0
local base = os.time() * 1000000

function init(args)
  local path = os.getenv("HB_KEYS") or "keys.txt"
  for line in io.lines(path) do
    keys[#keys + 1] = line
  end
  math.randomseed(os.time() + (tonumber(args[1]) or 0))
end

function request()
  counter = counter + 1
  local key = keys[math.random(#keys)]
  local body = string.format('{"seq":%d,"version":"1.0.0"}', base + counter)
  return wrk.format("POST", "/api/v1/tenant/heartbeat",
    {["Content-Type"] = "application/json", ["Authorization"] = "Bearer " .. key}, body)
end

function done(summary, latency, requests)
  io.write(string.format("RESULT rps=%.1f p50_us=%d p99_us=%d errors=%d non2xx=%d\n",
    summary.requests / (summary.duration / 1e6), latency:percentile(50), latency:percentile(99),
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    summary.errors.status))
end
