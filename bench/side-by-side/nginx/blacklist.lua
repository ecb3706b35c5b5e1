-- W3: examples/blacklist (rulesets/main.json) in nginx + Lua, for the side-by-side benchmark.
--
--   blacklisted client address  -> 403 "blocked: REASON" (text/plain)
--   otherwise                   -> record the address in the user's history (the last 5,
--                                  newest first; the key is the `user` query parameter, or
--                                  "@ADDRESS" without one) and answer
--   {"user":..,"ip":..,"ip_changed":..,"previous_ip":..,"client":{"CLIENT_IP":..}}
--
-- The blacklist (examples/blacklist/data/blacklist.csv) is loaded once, in init_by_lua. The
-- histories live in a per-worker Lua table: the benchmark runs one worker (a deployment with
-- several workers would need a lua_shared_dict, at some cost per request).
local M = {}

local KEEP = 5
local blacklist = {} -- address -> reason
local history = {}   -- key -> list of addresses, newest first

-- One CSV record: fields separated by commas, optionally in double quotes ("" inside quotes
-- is a quote).
local function csv_fields(line)
  local fields, i, n = {}, 1, #line
  while i <= n + 1 do
    if line:sub(i, i) == '"' then
      local buf, j = {}, i + 1
      while true do
        local q = line:find('"', j, true)
        if not q then buf[#buf + 1] = line:sub(j); i = n + 2; break end
        buf[#buf + 1] = line:sub(j, q - 1)
        if line:sub(q + 1, q + 1) == '"' then
          buf[#buf + 1] = '"'; j = q + 2
        else
          i = q + 2 -- past the closing quote and the comma
          break
        end
      end
      fields[#fields + 1] = table.concat(buf)
    else
      local c = line:find(",", i, true) or (n + 1)
      fields[#fields + 1] = line:sub(i, c - 1)
      i = c + 1
    end
  end
  return fields
end

function M.load(path)
  local f = assert(io.open(path, "r"))
  local header = true
  local count = 0
  for line in f:lines() do
    line = line:gsub("\r$", "")
    if header then
      header = false
    elseif line ~= "" then
      local row = csv_fields(line)
      blacklist[row[1]] = row[2] or ""
      count = count + 1
    end
  end
  f:close()
  return count
end

local escapes = { ['"'] = '\\"', ['\\'] = '\\\\', ['\n'] = '\\n', ['\r'] = '\\r', ['\t'] = '\\t' }
local function json_string(s)
  if s == nil then return "null" end
  if s:find('[%c"\\]') then
    s = s:gsub('[%c"\\]', function(c) return escapes[c] or string.format("\\u%04x", c:byte()) end)
  end
  return '"' .. s .. '"'
end

function M.handle()
  local ip = ngx.var.remote_addr
  local reason = blacklist[ip]
  local body
  if reason then
    body = "blocked: " .. reason
    ngx.status = 403
    ngx.header.content_type = "text/plain"
  else
    local user = ngx.var.arg_user
    if user then user = ngx.unescape_uri(user) end
    local key = user or ("@" .. ip)
    local h = history[key]
    if not h then
      h = {}
      history[key] = h
    end
    table.insert(h, 1, ip)
    h[KEEP + 1] = nil
    local previous = h[2]
    local changed = previous ~= nil and previous ~= ip
    local quoted_ip = json_string(ip)
    body = '{"user":' .. json_string(user) .. ',"ip":' .. quoted_ip ..
           ',"ip_changed":' .. (changed and "true" or "false") ..
           ',"previous_ip":' .. json_string(previous) ..
           ',"client":{"CLIENT_IP":' .. quoted_ip .. '}}'
    ngx.header.content_type = "application/json"
  end
  ngx.header.content_length = #body
  ngx.print(body)
end

return M
