--- lcparallel's own answers, no job run: --help, --version, --citation.

local M = {}

M.VERSION = "lcparallel (luaconcurrent) 20221122-compatible"

M.USAGE = [==[
usage: lcparallel [options] [command [args]] ::: values ... [:::: files ...]
       luaconcurrent --parallel [options] ...      (the same)
Runs command once per value (or combination of values), many at a time,
as GNU parallel 20221122 does: through your shell ($PARALLEL_SHELL, else
the shell lcparallel was started from), values quoted only where needed.
Input
  ::: v1 v2 ...       values          :::: f1 f2 ...   files, one value a line
  :::+ / ::::+        linked to the source before (the shortest decides)
  -a, --arg-file F    a file of values ("-" is stdin); stdin when no source
  --link              link all sources (the shorter ones recycled)
  -0, --null          values end in NUL         -d, --delimiter D  ... in D
  -C, --colsep RE     split each value into columns {1} {2} ...
  --header :          the first value of each source names it: {name}
  -n N, -N N          N values a job ({1}..{N}); -N0 reads one, inserts none
  -X, -m              as many values a job as fit (-X repeats the word)
  -r                  skip empty values       --shuf   jobs in random order
  -I STR              STR instead of {}       -q       quote the command
Replacement strings
  {} {.} {/} {//} {/.} {#} (job number) {%} (slot) {n} {n.} {n/} {n//}
  {n/.} {-n} ...  ({= perl =} needs perl: refused)
Running
  -j, --jobs N        N jobs at once: N, 0 (no limit), N%, +N, -N of the
                      CPUs, or a file holding one of these (default: CPUs)
  --timeout S|N%      seconds a job, or N% of the median success (TERM,
                      then KILL after --kill-grace)
  --retries N         try a failing job N times in all
  --retry-delay S     seconds before each retry (lcparallel's own)
  --halt SPEC         now|soon,fail|success|done=N|N%, or 0 1 2 -1 -2 N%
  --delay S           seconds between job starts
  --nice N            run jobs under nice -n N
  --termseq TERM,ms,...,KILL,ms   the kill grace of --timeout and --halt now
  --kill-grace S      seconds from TERM to KILL (lcparallel's own)
  --env VAR           accepted (jobs inherit the environment)
  --joblog [+]FILE    one line a job (+FILE appends)
  --resume, --resume-failed, --retry-failed   (with --joblog)
  -S, --sshlogin L    hosts over ssh: [N/][user@]host[:port], ":" here
  --slf FILE          hosts from FILE      --slurm N   N Slurm job steps
  --srun-options S    options for each Slurm step's srun, e.g. "-c 2 --mem=1G"
  --dry-run           print the commands, run nothing
  --pipe              blocks of stdin to each job's stdin; --pipepart -a FILE
                      the same from a file, each job reading its own part
  --block SIZE, --recstart S, --recend S, -N records   how blocks are cut
Output
  --group (default), -k/--keep-order, --line-buffer, -u/--ungroup
  --tag, --tagstring STR, -v (print each command), --files
  --results DIR|F.csv|F.tsv|F.json     --timeline FILE (SVG or .json)
  --bar, --eta, --progress             a progress bar on stderr
  --version, --will-cite, --citation, -h/--help
Exit status: 0 all ok; 1-100 that many jobs failed; 101 more; with --halt
as GNU parallel (the failing job's status for fail=1); 255 bad usage.
]==]

--- The text asked for by -h, --version or --citation; nil for a run.
function M.asked(o)
  if o.help then return M.USAGE end
  if o.version then return M.VERSION .. "\n" end
  if o.citation then
    return "lcparallel needs no citation notice; when you publish results made with GNU parallel's\n"
      .. "semantics, cite GNU parallel as `parallel --citation` says.\n"
  end
end

return M
