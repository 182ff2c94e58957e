-- wrk script for bench/oneclick_bench.py --client wrk: RFC 8058 one-click POSTs,
-- each to a reader of its own. Arguments after "--": the file of unsubscribe tokens,
-- one per line, and the number of wrk threads (each takes its own share of the file).
local threads = {}

function setup(thread)
  thread:set("index", #threads)
  table.insert(threads, thread)
end

function init(args)
  tokens = {}
  for line in io.lines(args[1]) do
    tokens[#tokens + 1] = line
  end
  local share = math.floor(#tokens / tonumber(args[2]))
  next_token = share * index
  last_token = next_token + share
  headers = { ["Content-Type"] = "application/x-www-form-urlencoded" }
end

function request()
  next_token = next_token + 1
  if next_token > last_token then
    error("bench/oneclick.lua: more requests than tokens; ask for more readers")
  end
  return wrk.format("POST", "/unsubscribe/" .. tokens[next_token], headers,
    "List-Unsubscribe=One-Click")
end
