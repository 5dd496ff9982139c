-- wrk script for every benchmark scenario: each request carries
-- `Authorization: Bearer <token>`, the tokens taken in turn from a file (one per line).
-- No-auth scenarios get a token too, so the load generator does the same work per
-- request whatever it measures. Requests are formatted once, in init().
--
--   wrk -t1 -c32 -d3s -s tokens.lua http://127.0.0.1:18080/ -- tokens.txt
--
-- At the end it prints one line, `BENCHJSON {...}`, that bench.py parses.

local prepared = {}
local count = 0
local next_index = 0

function init(args)
   local file = args[1]
   assert(file, "pass the token file after --")
   for token in io.lines(file) do
      if token ~= "" then
         count = count + 1
         prepared[count] = wrk.format("GET", nil, { Authorization = "Bearer " .. token })
      end
   end
   assert(count > 0, "no tokens in " .. file)
end

function request()
   next_index = next_index % count + 1
   return prepared[next_index]
end

function done(summary, latency, _)
   local errors = summary.errors
   io.write("BENCHJSON ", string.format(
      '{"requests":%d,"duration_us":%d,"status_errors":%d,"socket_errors":%d,' ..
      '"p50_us":%d,"p99_us":%d,"max_us":%d}',
      summary.requests, summary.duration, errors.status,
      errors.connect + errors.read + errors.write + errors.timeout,
      latency:percentile(50), latency:percentile(99), latency.max), "\n")
end
