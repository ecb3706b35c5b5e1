-- wrk script of the side-by-side benchmark: counts every response whose status is not 2xx
-- (wrk itself counts only >= 400), and prints one machine-readable line at the end:
--   CAPBENCH requests duration_us p50_us p99_us non2xx connect read write timeout status
-- Each thread keeps its count in a global; done() adds them up through setup()'s threads.
non2xx = 0
local threads = {}

function setup(thread)
  threads[#threads + 1] = thread
end

function response(status, headers, body)
  if status < 200 or status > 299 then
    non2xx = non2xx + 1
  end
end

function done(summary, latency, requests)
  local bad = 0
  for _, t in ipairs(threads) do
    bad = bad + (t:get("non2xx") or 0)
  end
  local e = summary.errors
  io.write(string.format("CAPBENCH %d %d %.1f %.1f %d %d %d %d %d %d\n",
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    bad, e.connect, e.read, e.write, e.timeout, e.status))
end
