-- PiiMask: masks card numbers, IBANs and e-mail addresses in a text.

local function luhn_ok(digits)
  local sum, alt = 0, false
  for i = #digits, 1, -1 do
    local d = digits:byte(i) - 48
    if alt then
      d = d * 2
      if d > 9 then d = d - 9 end
    end
    sum = sum + d
    alt = not alt
  end
  return sum % 10 == 0
end

local function iban_ok(compact)
  -- Move the first four characters to the end, letters become 10..35, then mod 97.
  local moved = compact:sub(5) .. compact:sub(1, 4)
  local rem = 0
  for i = 1, #moved do
    local c = moved:byte(i)
    local v
    if c >= 48 and c <= 57 then v = c - 48 else v = c - 55 end
    if v >= 10 then rem = (rem * 100 + v) % 97 else rem = (rem * 10 + v) % 97 end
  end
  return rem == 1
end

-- Replaces every character of `s` that matches `class` by `mask`, except the last `keep`
-- such characters.
local function mask_keeping(s, class, keep, mask)
  local total = select(2, s:gsub(class, ""))
  local seen = 0
  return (s:gsub(class, function(ch)
    seen = seen + 1
    if seen > total - keep then return ch end
    return mask
  end))
end

local function mask_cards(text, mask)
  local n = 0
  -- A run of digits with single spaces or dashes between them, not glued to other digits.
  local out = text:gsub("()(%d[%d %-]*%d)()", function(first, run, after)
    local before = first > 1 and text:sub(first - 1, first - 1) or ""
    local next_char = text:sub(after, after)
    if before:match("[%w]") or next_char:match("[%w]") then return nil end
    if run:find("[ %-][ %-]") then return nil end
    local digits = run:gsub("[ %-]", "")
    if #digits < 13 or #digits > 19 or not luhn_ok(digits) then return nil end
    n = n + 1
    return mask_keeping(run, "%d", 4, mask)
  end)
  return out, n
end

local function mask_ibans(text, mask)
  local n = 0
  local out = text:gsub("()(%u%u%d%d[%dA-Z ]+)", function(first, whole)
    local candidate = whole
    local before = first > 1 and text:sub(first - 1, first - 1) or ""
    if before:match("[%w]") then return nil end
    -- Take groups while they keep the IBAN shape (at most 34 characters without spaces).
    candidate = candidate:gsub("%s+$", "")
    local compact = candidate:gsub(" ", "")
    while #compact > 34 do
      candidate = candidate:sub(1, -2):gsub("%s+$", "")
      compact = candidate:gsub(" ", "")
    end
    while #compact >= 15 do
      if iban_ok(compact) then
        n = n + 1
        return candidate:sub(1, 2) .. mask_keeping(candidate:sub(3), "[%dA-Z]", 4, mask) ..
                 whole:sub(#candidate + 1)
      end
      candidate = candidate:sub(1, -2):gsub("%s+$", "")
      compact = candidate:gsub(" ", "")
    end
    return nil
  end)
  return out, n
end

local function mask_emails(text, mask)
  local n = 0
  local out = text:gsub("([%w%._%%%+%-]+)@([%w%-]+%.[%w%.%-]*%a)", function(user, domain)
    n = n + 1
    return user:sub(1, 1) .. string.rep(mask, 3) .. "@" .. domain
  end)
  return out, n
end

return function(ctx, p)
  local text = p.text or ""
  local mask = p.mask
  if type(mask) ~= "string" or #mask ~= 1 then
    error("mask must be a single character, got '" .. tostring(mask) .. "'")
  end
  local kinds = {}
  for _, k in ipairs(p.kinds or {}) do
    if k ~= "card" and k ~= "iban" and k ~= "email" then
      error("unknown kind '" .. tostring(k) .. "' (card, iban, email)")
    end
    kinds[k] = true
  end
  local total, n = 0, 0
  if kinds.email then text, n = mask_emails(text, mask); total = total + n end
  if kinds.iban then text, n = mask_ibans(text, mask); total = total + n end
  if kinds.card then text, n = mask_cards(text, mask); total = total + n end
  ctx:set(p.output, text)
  ctx:set(p.count, total)
  if total > 0 then return "masked" end
  return "clean"
end
