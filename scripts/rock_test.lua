-- `luarocks test`: the core busted suite (without the specs tagged remote
-- or slurm, which start sshd and Slurm daemons; `make test` runs those)
-- against a build of this checkout, under the Lua that LuaRocks runs this
-- script with. Extra arguments go to busted.
local lua = arg[-1] or "lua5.4"

local function sh(cmd)
  local ok, how, code = os.execute(cmd)
  if not ok then
    io.stderr:write("rock_test.lua: failed (", tostring(how), " ", tostring(code), "): ", cmd, "\n")
    os.exit(type(code) == "number" and code ~= 0 and code or 1)
  end
end

local function q(s) return "'" .. s:gsub("'", "'\\''") .. "'" end

-- The specs run the executable and the module of a normal build too.
sh("make --no-print-directory all build/oom/luaconcurrent")

-- busted: a LuaRocks wrapper (a shell script that picks its own Lua), or
-- a Lua script such as Debian's /usr/bin/busted (run with this Lua).
local p = io.popen("command -v busted")
local busted = p:read("l")
p:close()
if not busted then
  io.stderr:write("rock_test.lua: busted not found ",
    "(luarocks --lua-version=5.4 install busted, or Debian's lua-busted)\n")
  os.exit(1)
end
local f = assert(io.open(busted, "r"))
local first = f:read("l") or ""
f:close()
local cmd = first:find("^#!.*sh%s*$") and q(busted) or (q(lua) .. " " .. q(busted))
local extra = {}
for i = 1, #arg do extra[#extra + 1] = q(arg[i]) end
sh(cmd .. " --exclude-tags=remote,slurm " .. table.concat(extra, " "))
