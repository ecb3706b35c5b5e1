-- W3: GET /check?user=userN with N cycling through BENCH_USERS users (default 1000), on top
-- of check.lua's status counting. Every request comes from 127.0.0.1: the client address is
-- fixed (so never blacklisted), only the user varies.
dofile(os.getenv("BENCH_WRK_DIR") .. "/check.lua")

local users = tonumber(os.getenv("BENCH_USERS") or "1000")
local n = 0

function request()
  n = n + 1
  if n > users then n = 1 end
  return wrk.format("GET", "/check?user=user" .. n)
end
