/*
** main.c — the luaconcurrent stand-alone interpreter.
**
** Modelled on lua.c of Lua 5.4: everything runs inside a protected call
** (main -> pmain), errors get a traceback from a message handler and are
** reported as "luaconcurrent: message" on stderr. The Lua layer is compiled
** in (see embedded.h) and registered in package.preload, next to the C
** engine (luaopen_luaconcurrent_core), so the executable needs no source
** tree at run time.
**
** Exit status: 0 ok; 1 error; for a declarative task file, what
** run_task_file returned; but once SIGINT/SIGTERM interrupted a run, the
** process ends by that signal (128+signum in the shell) whatever came after.
*/

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lua.h"
#include "lauxlib.h"
#include "lualib.h"

#include "embedded.h"
#include "hugemem.h"
#include "host.h"
#include "proc.h"
#include "signals.h"

#define LC_PROGNAME "luaconcurrent"
#define LC_VERSION  "0.1.0"

#define LC_INITVARVERSION \
  "LUA_INIT_" LUA_VERSION_MAJOR "_" LUA_VERSION_MINOR
#define LC_INITVAR "LUA_INIT"

int luaopen_luaconcurrent_core (lua_State *L);


/*
** {==================================================================
** Signals (as lua.c does it)
** ===================================================================
*/

static lua_State *globalL = NULL;


/*
** Hook set when SIGINT or SIGTERM arrives: stops the interpreter at the
** next call, return, line or instruction, and takes the signal as handled.
*/
static void lstop (lua_State *L, lua_Debug *ar) {
  (void)ar;  /* unused arg. */
  lua_sethook(L, NULL, 0, 0);  /* reset hook */
  lc_sig_pending = 0;  /* this error is the run's answer to it */
  lua_pushfstring(L, LC_PROGNAME ": interrupted by %s",
                  lc_signal_name(lc_sig_last));
  lua_error(L);
}


/*
** Called from the signal handler (signals.c) on the first SIGINT or
** SIGTERM. Blocking system calls are not restarted, so the engine's event
** loop returns to Lua with EINTR and the hook runs; the run kills and reaps
** its tasks on the way out. A second signal kills every task group and
** exits at once (signals.c), however the first was handled; one within
** 250 ms of the first counts as the same (timeout(1) signals the child,
** then its group). A script that
** catches the error still ends by the signal (main, at exit).
*/
static void laction (int sig) {
  int flag = LUA_MASKCALL | LUA_MASKRET | LUA_MASKLINE | LUA_MASKCOUNT;
  (void)sig;
  if (globalL) lua_sethook(globalL, lstop, flag, 1);
}

/* }================================================================== */


static void print_usage (FILE *f, const char *badoption) {
  if (badoption != NULL) {
    if (badoption[1] == 'e' || badoption[1] == 'l')
      fprintf(f, "%s: '%s' needs argument\n", LC_PROGNAME, badoption);
    else
      fprintf(f, "%s: unrecognized option '%s'\n", LC_PROGNAME, badoption);
  }
  fprintf(f,
  "usage: %s [options] [script [args]]\n"
  "Available options are:\n"
  "  -e stat   execute string 'stat'\n"
  "  -l mod    require library 'mod' into global 'mod'\n"
  "  -l g=mod  require library 'mod' into global 'g'\n"
  "  -v        show version information\n"
  "  -E        ignore environment variables\n"
  "  -W        turn warnings on\n"
  "  --json    a declarative task file prints its results as one JSON document\n"
  "  --parallel ...  the command line for shell users, GNU parallel's way\n"
  "            (luaconcurrent --parallel --help lists its options)\n"
  "  -h, --help  show this help\n"
  "  --        stop handling options\n"
  "  -         stop handling options and execute stdin\n"
  "A script returning a table with both 'pargs' and 'tasks' (and runner options;\n"
  "mode = \"coroutine\", \"thread\" or \"process\") is a declarative task file:\n"
  "its tasks are run and the exit status is 0 if all succeeded, else 1.\n",
  LC_PROGNAME);
  fflush(f);
}


/*
** Prints an error message, adding the program name in front of it
** (unless the message already starts with it).
*/
static void l_message (const char *msg) {
  size_t n = strlen(LC_PROGNAME ": ");
  if (strncmp(msg, LC_PROGNAME ": ", n) != 0)
    fprintf(stderr, "%s: ", LC_PROGNAME);
  fprintf(stderr, "%s\n", msg);
  fflush(stderr);
}


/*
** Check whether 'status' is not OK and, if so, prints the error
** message on the top of the stack.
*/
static int report (lua_State *L, int status) {
  if (status != LUA_OK) {
    const char *msg = lua_tostring(L, -1);
    if (msg == NULL)
      msg = "(error object is not a string)";
    l_message(msg);
    lua_pop(L, 1);  /* remove message */
  }
  return status;
}


/*
** Message handler used to run all chunks: turns the error object into a
** string (through __tostring if it has one) and appends a traceback.
*/
static int msghandler (lua_State *L) {
  const char *msg = lua_tostring(L, 1);
  if (msg == NULL) {  /* is error object not a string? */
    if (luaL_callmeta(L, 1, "__tostring") &&  /* does it have a metamethod */
        lua_type(L, -1) == LUA_TSTRING)  /* that produces a string? */
      msg = lua_tostring(L, -1);  /* that is the message */
    else
      msg = lua_pushfstring(L, "(error object is a %s value)",
                               luaL_typename(L, 1));
  }
  luaL_traceback(L, L, msg, 1);  /* append a standard traceback */
  return 1;  /* return the traceback */
}


/*
** Interface to 'lua_pcall', which sets appropriate message function
** and the signal handlers.
*/
static int docall (lua_State *L, int narg, int nres) {
  int status;
  int base = lua_gettop(L) - narg;  /* function index */
  lua_pushcfunction(L, msghandler);  /* push message handler */
  lua_insert(L, base);  /* put it under function and args */
  globalL = L;  /* to be available to 'laction' */
  status = lua_pcall(L, narg, nres, base);
  lua_remove(L, base);  /* remove message handler from the stack */
  return status;
}


static void print_version (void) {
  printf("%s %s (%s)\n", LC_PROGNAME, LC_VERSION, LUA_RELEASE);
  fflush(stdout);
}


/*
** Create the 'arg' table, which stores all arguments from the
** command line ('argv'). It should be aligned so that, at index 0,
** it has 'argv[script]', which is the script name. The arguments
** to the script (everything after 'script') go to positive indices;
** other arguments (before the script name) go to negative indices.
** If there is no script name, assume interpreter's name as base.
*/
static void createargtable (lua_State *L, char **argv, int argc, int script) {
  int i, narg;
  if (script == argc) script = 0;  /* no script name? */
  narg = argc - (script + 1);  /* number of positive indices */
  lua_createtable(L, narg, script + 1);
  for (i = 0; i < argc; i++) {
    lua_pushstring(L, argv[i]);
    lua_rawseti(L, -2, i - script);
  }
  lua_setglobal(L, "arg");
}


static int dochunk (lua_State *L, int status) {
  if (status == LUA_OK) status = docall(L, 0, 0);
  return report(L, status);
}


static int dofile (lua_State *L, const char *name) {
  return dochunk(L, luaL_loadfile(L, name));
}


static int dostring (lua_State *L, const char *s, const char *name) {
  return dochunk(L, luaL_loadbuffer(L, s, strlen(s), name));
}


/*
** Receives 'globname[=modname]' and runs 'globname = require(modname)'.
*/
static int dolibrary (lua_State *L, char *globname) {
  int status;
  char *modname = strchr(globname, '=');
  if (modname == NULL)  /* no explicit name? */
    modname = globname;  /* module name is equal to global name */
  else {
    *modname = '\0';  /* global name ends here */
    modname++;  /* module name starts after the '=' */
  }
  lua_getglobal(L, "require");
  lua_pushstring(L, modname);
  status = docall(L, 1, 1);  /* call 'require(modname)' */
  if (status == LUA_OK)
    lua_setglobal(L, globname);  /* globname = require(modname) */
  return report(L, status);
}


/*
** Push on the stack the contents of table 'arg' from 1 to #arg
*/
static int pushargs (lua_State *L) {
  int i, n;
  if (lua_getglobal(L, "arg") != LUA_TTABLE)
    luaL_error(L, "'arg' is not a table");
  n = (int)luaL_len(L, -1);
  luaL_checkstack(L, n + 3, "too many arguments to script");
  for (i = 1; i <= n; i++)
    lua_rawgeti(L, -i, i);
  lua_remove(L, -i);  /* remove table from the stack */
  return n;
}


/*
** Is the value at 'idx' a declarative task file, i.e. a table with a
** 'pargs' or a 'tasks' field?
*/
static int istaskfile (lua_State *L, int idx) {
  int found;
  if (!lua_istable(L, idx)) return 0;
  found = (lua_getfield(L, idx, "pargs") != LUA_TNIL);
  lua_pop(L, 1);
  if (!found) {
    found = (lua_getfield(L, idx, "tasks") != LUA_TNIL);
    lua_pop(L, 1);
  }
  return found;
}


/*
** Runs require("luaconcurrent.cli").run_task_file(tbl, {json = json})
** on the table at 'idx'; stores the integer it returns in '*exitcode'.
*/
static int run_taskfile (lua_State *L, int idx, int json, int *exitcode) {
  int status;
  idx = lua_absindex(L, idx);
  lua_getglobal(L, "require");
  lua_pushliteral(L, "luaconcurrent.cli");
  status = docall(L, 1, 1);
  if (status != LUA_OK) return report(L, status);
  if (lua_getfield(L, -1, "run_task_file") != LUA_TFUNCTION) {
    lua_pop(L, 2);
    lua_pushliteral(L, "luaconcurrent.cli has no function 'run_task_file'");
    return report(L, LUA_ERRRUN);
  }
  lua_remove(L, -2);  /* remove module table */
  lua_pushvalue(L, idx);  /* the task table */
  lua_createtable(L, 0, 1);  /* options */
  lua_pushboolean(L, json);
  lua_setfield(L, -2, "json");
  status = docall(L, 2, 1);
  if (status != LUA_OK) return report(L, status);
  if (lua_isinteger(L, -1))
    *exitcode = (int)(lua_tointeger(L, -1) & 0xff);
  else if (lua_isnumber(L, -1) && (lua_Integer)lua_tonumber(L, -1) == lua_tonumber(L, -1))
    *exitcode = (int)((lua_Integer)lua_tonumber(L, -1) & 0xff);
  else {
    lua_pushfstring(L, "run_task_file returned %s, expected an integer",
                       luaL_typename(L, -1));
    lua_remove(L, -2);
    return report(L, LUA_ERRRUN);
  }
  lua_pop(L, 1);
  return LUA_OK;
}


/*
** Runs the main script ('argv[0]', "-" for stdin unless it followed
** "--"), passing it the script arguments as '...'. If it returns a
** declarative task file, runs it.
*/
static int handle_script (lua_State *L, char **argv, int json, int *exitcode) {
  int status;
  int top = lua_gettop(L);
  const char *fname = argv[0];
  if (strcmp(fname, "-") == 0 && strcmp(argv[-1], "--") != 0)
    fname = NULL;  /* stdin */
  status = luaL_loadfile(L, fname);
  if (status == LUA_OK) {
    int n = pushargs(L);  /* push arguments to script */
    status = docall(L, n, LUA_MULTRET);
  }
  if (status == LUA_OK && lua_gettop(L) > top && istaskfile(L, top + 1))
    status = run_taskfile(L, top + 1, json, exitcode);
  else
    status = report(L, status);
  lua_settop(L, top);
  return status;
}


/* bits of various argument indicators in 'args' */
#define has_error	1	/* bad option */
#define has_i		2	/* -i */
#define has_v		4	/* -v */
#define has_e		8	/* -e */
#define has_E		16	/* -E */
#define has_json	32	/* --json */
#define has_help	64	/* -h, --help */
#define has_worker	128	/* --worker: a process worker (internal) */
#define has_rworker	256	/* --remote-worker: a remote host's worker (internal) */


/*
** Traverses all arguments from 'argv', returning a mask with those
** needed before running any Lua code or an error code if it finds any
** invalid argument. In case of error, 'first' is the index of the bad
** argument.  Otherwise, 'first' is -1 if there is no program name,
** 0 if there is no script name, or the index of the script name.
*/
static int collectargs (char **argv, int *first) {
  int args = 0;
  int i;
  if (argv[0] == NULL) {  /* no program name */
    *first = -1;
    return 0;
  }
  for (i = 1; argv[i] != NULL; i++) {  /* handle arguments */
    *first = i;
    if (argv[i][0] != '-')  /* not an option? */
        return args;  /* stop handling options */
    switch (argv[i][1]) {  /* else check option */
      case '-':  /* '--' or a long option */
        if (argv[i][2] != '\0') {  /* long option? */
          if (strcmp(argv[i], "--json") == 0)
            args |= has_json;
          else if (strcmp(argv[i], "--help") == 0)
            args |= has_help;
          else if (strcmp(argv[i], "--worker") == 0)
            args |= has_worker;
          else if (strcmp(argv[i], "--remote-worker") == 0)
            args |= has_rworker;
          else
            return has_error;  /* invalid option */
          break;
        }
        *first = i + 1;
        return args;
      case '\0':  /* '-' */
        return args;  /* script "name" is '-' */
      case 'E':
        if (argv[i][2] != '\0')  /* extra characters? */
          return has_error;  /* invalid option */
        args |= has_E;
        break;
      case 'W':
        if (argv[i][2] != '\0')  /* extra characters? */
          return has_error;  /* invalid option */
        break;
      case 'h':
        if (argv[i][2] != '\0')  /* extra characters? */
          return has_error;  /* invalid option */
        args |= has_help;
        break;
      case 'i':
        args |= has_i;  /* (-i implies -v) */
        /* FALLTHROUGH */
      case 'v':
        if (argv[i][2] != '\0')  /* extra characters? */
          return has_error;  /* invalid option */
        args |= has_v;
        break;
      case 'e':
        args |= has_e;
        /* FALLTHROUGH */
      case 'l':  /* both options need an argument */
        if (argv[i][2] == '\0') {  /* no concatenated argument? */
          i++;  /* try next 'argv' */
          if (argv[i] == NULL || argv[i][0] == '-')
            return has_error;  /* no next argument or it is another option */
        }
        break;
      default:  /* invalid option */
        return has_error;
    }
  }
  *first = i;  /* no script name */
  return args;
}


/*
** Processes options 'e', 'l' and 'W', in order. Returns 0 if some code
** raises an error.
*/
static int runargs (lua_State *L, char **argv, int n) {
  int i;
  for (i = 1; i < n; i++) {
    int option = argv[i][1];
    switch (option) {
      case 'e':  case 'l': {
        int status;
        char *extra = argv[i] + 2;  /* both options need an argument */
        if (*extra == '\0') extra = argv[++i];
        status = (option == 'e')
                 ? dostring(L, extra, "=(command line)")
                 : dolibrary(L, extra);
        if (status != LUA_OK) return 0;
        break;
      }
      case 'W':
        lua_warning(L, "@on", 0);  /* warnings on */
        break;
    }
  }
  return 1;
}


static int handle_luainit (lua_State *L) {
  const char *name = "=" LC_INITVARVERSION;
  const char *init = getenv(name + 1);
  if (init == NULL) {
    name = "=" LC_INITVAR;
    init = getenv(name + 1);  /* try alternative name */
  }
  if (init == NULL) return LUA_OK;
  else if (init[0] == '@')
    return dofile(L, init + 1);
  else
    return dostring(L, init, name);
}


/*
** Loader for an embedded module: loads its source (text only) under a
** readable chunk name and calls it with the module name and the chunk's
** pseudo file name, as Lua's own searchers do.
*/
static int embedded_loader (lua_State *L) {
  const struct lc_embedded *m =
    (const struct lc_embedded *)lua_touserdata(L, lua_upvalueindex(1));
  if (luaL_loadbufferx(L, m->source, m->len, m->chunkname, "t") != LUA_OK)
    return lua_error(L);
  lua_pushstring(L, m->name);
  lua_pushstring(L, m->chunkname + 1);  /* without the '@' */
  lua_call(L, 2, 1);
  return 1;
}


/*
** luaconcurrent.sources(name) -> the source text of an embedded module, or
** nil: code that ships a module to another host (the remote worker) reads
** it here, as it reads the file when run as a module.
*/
static int embedded_source (lua_State *L) {
  const char *name = luaL_checkstring(L, 1);
  const struct lc_embedded *m;
  for (m = lc_embedded_modules; m->name != NULL; m++)
    if (strcmp(m->name, name) == 0) {
      lua_pushlstring(L, m->source, m->len);
      return 1;
    }
  return 0;
}

static int open_sources (lua_State *L) {
  lua_pushcfunction(L, embedded_source);
  return 1;
}

/*
** luaconcurrent.remote_channel (--remote-worker only): the engine watches
** only the pipes of processes it started, so the remote worker reads its
** channel (stdin) through a relay child that inherits it. A stream child
** inherits fd 2, so for the spawn alone fd 2 is made the channel:
** channel_as_stderr(true) before loop:spawn, (false) right after.
*/
static int saved_stderr = -1;

static int channel_as_stderr (lua_State *L) {
  if (lua_toboolean(L, 1)) {
    if (saved_stderr >= 0) return luaL_error(L, "channel_as_stderr: already");
    fflush(stderr);
    saved_stderr = fcntl(2, F_DUPFD_CLOEXEC, 3);
    if (saved_stderr < 0 || dup2(0, 2) < 0)
      return luaL_error(L, "channel_as_stderr: %s", strerror(errno));
  }
  else if (saved_stderr >= 0) {
    dup2(saved_stderr, 2);
    close(saved_stderr);
    saved_stderr = -1;
  }
  return 0;
}

static int open_remote_channel (lua_State *L) {
  lua_createtable(L, 0, 2);
  lua_pushcfunction(L, channel_as_stderr);
  lua_setfield(L, -2, "channel_as_stderr");
  lua_pushliteral(L, LC_VERSION);
  lua_setfield(L, -2, "version");
  return 1;
}

/*
** package.preload gets the engine (luaconcurrent.core), every embedded
** module of the Lua layer, and luaconcurrent.sources.
*/
static void register_preloads (lua_State *L) {
  const struct lc_embedded *m;
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
  lua_pushcfunction(L, luaopen_luaconcurrent_core);
  lua_setfield(L, -2, "luaconcurrent.core");
  lua_pushcfunction(L, open_sources);
  lua_setfield(L, -2, "luaconcurrent.sources");
  lua_pushcfunction(L, open_remote_channel);
  lua_setfield(L, -2, "luaconcurrent.remote_channel");
  for (m = lc_embedded_modules; m->name != NULL; m++) {
    lua_pushlightuserdata(L, (void *)m);
    lua_pushcclosure(L, embedded_loader, 1);
    lua_setfield(L, -2, m->name);
  }
  lua_pop(L, 1);
}


/*
** Main body of stand-alone interpreter (to be called in protected mode).
** Reads the options and handles them all. Returns the exit status.
*/
/*
** The command line for shell users: `luaconcurrent --parallel ...`, or this
** executable run under the name lcparallel. A form no Lua script run can be
** mistaken for; the work is luaconcurrent.shell's (built on the Lua API).
*/
static int parallel_mode (char **argv) {
  if (argv[0] == NULL) return 0;
  const char *base = strrchr(argv[0], '/');
  base = base ? base + 1 : argv[0];
  if (strcmp(base, "lcparallel") == 0) return 1;
  return argv[1] != NULL && strcmp(argv[1], "--parallel") == 0 ? 2 : 0;
}

static int run_parallel (lua_State *L, char **argv, int first) {
  int i;
  luaL_openlibs(L);
  register_preloads(L);
  lua_gc(L, LUA_GCRESTART);
  lua_getglobal(L, "require");
  lua_pushliteral(L, "luaconcurrent.shell");
  if (report(L, docall(L, 1, 1)) != LUA_OK) return 255;
  lua_getfield(L, -1, "main");
  lua_newtable(L);
  for (i = first; argv[i] != NULL; i++) {
    lua_pushstring(L, argv[i]);
    lua_rawseti(L, -2, i - first + 1);
  }
  /* main reports its own errors; whatever escapes it (a bug, no memory)
  ** is still said on stderr: a usage error is never a silent 255 */
  if (report(L, docall(L, 1, 1)) != LUA_OK) return 255;
  if (!lua_isinteger(L, -1)) {
    l_message("internal error: lcparallel returned no exit status");
    return 255;
  }
  return (int)lua_tointeger(L, -1);
}

static int pmain (lua_State *L) {
  int argc = (int)lua_tointeger(L, 1);
  char **argv = (char **)lua_touserdata(L, 2);
  int script;
  int exitcode = EXIT_SUCCESS;
  int parallel = parallel_mode(argv);
  int args = parallel ? 0 : collectargs(argv, &script);
  luaL_checkversion(L);  /* check that interpreter has correct version */
  if (parallel) {
    lua_pushinteger(L, run_parallel(L, argv, parallel));
    return 1;
  }
  if (args == has_error) {  /* bad arg? */
    print_usage(stderr, argv[script]);  /* 'script' has index of bad arg. */
    lua_pushinteger(L, EXIT_FAILURE);
    return 1;
  }
  if (args & has_help) {
    print_usage(stdout, NULL);
    lua_pushinteger(L, EXIT_SUCCESS);
    return 1;
  }
  if (args & has_i) {
    l_message("interactive mode (-i) is not supported");
    lua_pushinteger(L, EXIT_FAILURE);
    return 1;
  }
  if (args & has_v)  /* option '-v'? */
    print_version();
  if (args & has_E) {  /* option '-E'? */
    lua_pushboolean(L, 1);  /* signal for libraries to ignore env. vars. */
    lua_setfield(L, LUA_REGISTRYINDEX, "LUA_NOENV");
  }
  luaL_openlibs(L);  /* open standard libraries */
  register_preloads(L);
  lua_gc(L, LUA_GCRESTART);  /* start GC (worker processes too)... */
  if (args & has_worker) {  /* one task of an isolation = "process" run */
    lua_getglobal(L, "require");
    lua_pushliteral(L, "luaconcurrent.worker");
    if (docall(L, 1, 1) != LUA_OK) goto fail;
    lua_getfield(L, -1, "main");
    if (docall(L, 0, 1) != LUA_OK) goto fail;
    lua_pushinteger(L, lua_tointeger(L, -1));
    return 1;
  }
  if (args & has_rworker) {  /* a remote host's worker, over ssh */
    lua_getglobal(L, "require");
    lua_pushliteral(L, "luaconcurrent.remote.engine_worker");
    if (docall(L, 1, 1) != LUA_OK) goto fail;
    lua_getfield(L, -1, "main");
    if (docall(L, 0, 1) != LUA_OK) goto fail;
    lua_pushinteger(L, lua_tointeger(L, -1));
    return 1;
  }
  createargtable(L, argv, argc, script);  /* create table 'arg' */
  if (!(args & has_E)) {  /* no option '-E'? */
    if (handle_luainit(L) != LUA_OK)  /* run LUA_INIT */
      goto fail;  /* error running LUA_INIT */
  }
  if (!runargs(L, argv, script))  /* execute arguments -e and -l */
    goto fail;  /* something failed */
  if (script < argc) {  /* execute main script (if there is one) */
    if (handle_script(L, argv + script, (args & has_json) != 0,
                      &exitcode) != LUA_OK)
      goto fail;
  }
  else if (!(args & (has_e | has_v))) {  /* no script, no -e, no -v? */
    if (isatty(0)) {  /* stdin is a terminal: nothing to run */
      print_version();
      print_usage(stderr, NULL);
      exitcode = EXIT_FAILURE;
    }
    else if (dofile(L, NULL) != LUA_OK)  /* execute stdin as a file */
      goto fail;
  }
  lua_pushinteger(L, exitcode);
  return 1;
 fail:
  lua_pushinteger(L, EXIT_FAILURE);
  return 1;
}


/*
** The standard allocator, plus huge pages for big blocks: a task's
** captured output becomes one Lua string, and its pages fault in once.
*/
#ifdef LC_ALLOC_FAILURES
#include <stdatomic.h>
/*
** Test build only: with LC_FAIL_ALLOC_AT=n in the environment, the n-th
** allocation that grows memory (and every one after it) fails, so specs
** can check that running out of memory anywhere is a clean Lua error.
** LC_FAIL_ALLOC_AT=n,k fails only k of them from the n-th on, so a spec
** can see what a caught memory error leaves behind.
*/
static long fail_at = -1, fail_len = 0, allocs = 0;

static void *lc_lalloc (void *ud, void *ptr, size_t osize, size_t nsize) {
  (void)ud;
  if (fail_at > 0 && nsize > (ptr ? osize : 0) && ++allocs >= fail_at
      && (fail_len <= 0 || allocs < fail_at + fail_len))
    return NULL;
  return lc_mem_realloc(ptr, osize, nsize);
}

/*
** LC_FAIL_WORKER_ALLOC_AT=base,step does the same in thread-worker
** states: the k-th worker state created (k = 0, 1, ...) fails from its
** (base + k*step)-th allocation on, so one run of many pools sweeps the
** allocation points of a worker. Each worker thread makes one state and
** allocates only in it, hence the thread-local counters.
*/
static long worker_fail_base = -1, worker_fail_step = 0;
static atomic_long worker_states;
static _Thread_local long worker_allocs, worker_fail_at = -1;

static void *lc_worker_lalloc (void *ud, void *ptr, size_t osize, size_t nsize) {
  (void)ud;
  if (worker_fail_at < 0)  /* this thread's first allocation: its state */
    worker_fail_at = worker_fail_base
                     + atomic_fetch_add(&worker_states, 1) * worker_fail_step;
  if (nsize > (ptr ? osize : 0) && ++worker_allocs >= worker_fail_at)
    return NULL;
  if (nsize == 0) {
    free(ptr);
    return NULL;
  }
  return realloc(ptr, nsize);
}

static void init_alloc_failures (void) {
  const char *at = getenv("LC_FAIL_ALLOC_AT");
  if (at && sscanf(at, "%ld,%ld", &fail_at, &fail_len) < 1) fail_at = -1;
  at = getenv("LC_FAIL_WORKER_ALLOC_AT");
  if (at && sscanf(at, "%ld,%ld", &worker_fail_base, &worker_fail_step) >= 1
      && worker_fail_base > 0)
    lc_worker_alloc = lc_worker_lalloc;
}
#else
static void *lc_lalloc (void *ud, void *ptr, size_t osize, size_t nsize) {
  (void)ud;
  return lc_mem_realloc(ptr, osize, nsize);
}

static void init_alloc_failures (void) {}
#endif


int main (int argc, char **argv) {
  int status, result;
  lua_State *L;
  /* SIGPIPE keeps its default: the engine blocks it around its own writes
   * to children, so `luaconcurrent script | head` ends like lua5.4 does. */
  lc_embedded = 1;
  lc_state_setup = register_preloads;  /* worker states get them too */
  lc_signals_install(laction);
  L = luaL_newstate();  /* create state */
  if (L == NULL) {
    l_message("cannot create state: not enough memory");
    return EXIT_FAILURE;
  }
  /* Nothing big was allocated yet, so every block so far is malloc's. */
  lua_setallocf(L, lc_lalloc, NULL);
  init_alloc_failures();
  lua_gc(L, LUA_GCSTOP);  /* stop GC while building state */
  lua_pushcfunction(L, &pmain);  /* to call 'pmain' in protected mode */
  lua_pushinteger(L, argc);  /* 1st argument */
  lua_pushlightuserdata(L, argv); /* 2nd argument */
  status = lua_pcall(L, 2, 1, 0);  /* do the call */
  result = (status == LUA_OK) ? (int)lua_tointeger(L, -1) : EXIT_FAILURE;
  report(L, status);
  lua_close(L);
  if (lc_sig_last != 0) {
    /* Interrupted by SIGINT or SIGTERM: end by it, as lua5.4 with the
     * module does (l_signals_gc), even if the script caught the error. */
    int sig = lc_sig_last;
    fflush(NULL);
    signal(sig, SIG_DFL);
    raise(sig);
    result = 128 + sig;  /* (if it was blocked) */
  }
  return result;
}
