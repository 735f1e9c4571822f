--- Shell quoting, the one of the Lua layer: GNU parallel's for Bourne
-- shells (its shell_quote_scalar), byte for byte, as lcparallel --dry-run
-- must print what parallel prints. A word of only ASCII letters, digits
-- and `-_.+/` is left as it is (no POSIX shell gives any of these a
-- meaning in a word); any other is single-quoted, each `'` written as
-- `'"'"'`, and an empty word is `''`. Any bytes but NUL come back intact
-- as one word, in sh, dash, bash, ksh and zsh.
--
-- This file requires nothing: the plain remote worker gets its text
-- inlined (remote/bootstrap.lua), so both ends quote alike.

local M = {}

--- s as one shell word.
function M.quote(s)
  if s == "" then return "''" end
  if not s:find("[^%-_%.%+0-9A-Za-z/]") then return s end
  s = "'" .. s:gsub("'", "'\"'\"'") .. "'"
  return (s:gsub("^''", ""):gsub("''$", ""))
end

--- The words (strings) as one shell command line, each quoted.
function M.command(words)
  local t = {}
  for i = 1, #words do t[i] = M.quote(words[i]) end
  return table.concat(t, " ")
end

return M
