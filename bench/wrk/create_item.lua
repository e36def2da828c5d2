-- POST /items, each request with a name no other request used: the prefix (the
-- first argument after --), the thread's number and a counter.
local created = 0
local threads = 0
local prefix = ""

setup = function(thread)
  thread:set("thread_number", threads)
  threads = threads + 1
end

init = function(args)
  prefix = args[1]
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
end

request = function()
  created = created + 1
  local body = string.format(
    '{"name": "%s-%d-%d", "description": "made by the bench"}',
    prefix, thread_number, created
  )
  return wrk.format(nil, "/items", nil, body)
end
