-- GET /items/{id}, the id drawn among the seeded rows 1..N (N: the first
-- argument after --).
local rows = 1

init = function(args)
  rows = tonumber(args[1])
  math.randomseed(os.time())
end

request = function()
  return wrk.format("GET", "/items/" .. math.random(rows))
end
