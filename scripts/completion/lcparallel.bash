# bash completion for lcparallel (luaconcurrent --parallel): GNU parallel's
# command line. `make install` puts it in
# $(PREFIX)/share/bash-completion/completions/lcparallel.
#
# The option lists are lua/luaconcurrent/parallel/args.lua's OPTIONS, written
# out so completing costs no Lua start; spec/completion_spec.lua fails when
# they differ. Options lcparallel refuses are not offered.

_lcparallel_opts='--arg-file --arg-file-sep --arg-sep --argfile --argfilesep --argsep
  --bar --bibtex --block --block-size --blocksize --citation --col-sep --colsep --delay
  --delimiter --dr --dry-run --dryrun --env --eta --files --group --halt --halt-on-error
  --header --help --jl --joblog --jobs --keep-order --keeporder --kill-grace --lb
  --line-buffer --line-buffered --linebuffer --linebuffered --link --max-args --max-procs
  --max-replace-args --maxargs --maxprocs --maxreplaceargs --nice --nn --no-k
  --no-keep-order --no-notice --no-run-if-empty --nok --nokeeporder --nonotice
  --norunifempty --null --output-as-files --outputasfiles --pipe --pipe-part --pipepart
  --progress --quote --recend --recstart --res --result --results --resume --resume-failed
  --resumefailed --retries --retry-delay --retry-failed --retryfailed --shuf --silent
  --slf --slurm --spreadstdin --srun-options --sshlogin --sshloginfile --tag --tag-string
  --tagstring --term-seq --termseq --timeline --timeout --ungroup --verbose --version
  --will-cite --willcite --xapply
  -0 -C -I -N -P -S -V -X -a -d -h -j -k -m -n -q -r -t -u -v'

# The options that take a value (the next word, or after "=" / in a bundle).
_lcparallel_value_opts='--arg-file --arg-file-sep --arg-sep --argfile --argfilesep
  --argsep --block --block-size --blocksize --col-sep --colsep --delay --delimiter --env
  --halt --halt-on-error --header --jl --joblog --jobs --kill-grace --max-args --max-procs
  --max-replace-args --maxargs --maxprocs --maxreplaceargs --nice --recend --recstart
  --res --result --results --retries --retry-delay --slf --slurm --srun-options
  --sshlogin --sshloginfile --tag-string --tagstring --term-seq --termseq --timeline
  --timeout -C -I -N -P -S -a -d -j -n'

# Of those, the ones whose value is a file name.
_lcparallel_file_opts='--arg-file --argfile -a --jl --joblog --res --result --results
  --slf --sshloginfile --timeline'

# _lcparallel_takes_value WORD: true when WORD is an option whose value is
# the next word (a long option without "=", or a short bundle ending in a
# value-taking letter with nothing after it).
_lcparallel_takes_value() {
  local w=$1 i c
  case $w in
    --*=*) return 1 ;;
    --?*) [[ " "$(echo $_lcparallel_value_opts)" " == *" $w "* ]]; return ;;
    -?*)
      for ((i = 1; i < ${#w}; i++)); do
        c=${w:i:1}
        if [[ " "$(echo $_lcparallel_value_opts)" " == *" -$c "* ]]; then
          # The rest of the word, if any, is this option's value.
          ((i == ${#w} - 1)); return
        fi
      done
      return 1 ;;
  esac
  return 1
}

_lcparallel() {
  # bash splits "--joblog=FILE" at "=" (COMP_WORDBREAKS): join it back.
  local -a words=()
  local j cword=0
  for ((j = 0; j <= COMP_CWORD; j++)); do
    if [[ ${COMP_WORDS[j]} == = && ${words[${#words[@]} - 1]} == --?* ]]; then
      words[${#words[@]} - 1]+="="
      ((j < COMP_CWORD)) && { ((j++)); words[${#words[@]} - 1]+=${COMP_WORDS[j]}; }
    else
      words+=("${COMP_WORDS[j]}")
    fi
  done
  cword=$((${#words[@]} - 1))
  local cur=${words[cword]} prev=
  ((cword > 0)) && prev=${words[cword - 1]}
  COMPREPLY=()

  # Walk the words before the cursor: options (and their values) come
  # first; the first other word is the command, after it everything is
  # the command's or an input source's.
  local i w in_cmd= expect_value=
  for ((i = 1; i < cword; i++)); do
    w=${words[i]}
    if [[ -n $expect_value ]]; then expect_value=; continue; fi
    case $w in
      :::|::::|:::+|::::+) in_cmd=1; break ;;
      --) in_cmd=1; break ;;
      -?*) _lcparallel_takes_value "$w" && expect_value=1 ;;
      *) in_cmd=1; break ;;
    esac
  done

  # An input source of files ("::::"), or a file option's value.
  if [[ $prev == :::: || $prev == ::::+ ]] ||
     { [[ -z $in_cmd && -n $expect_value ]] &&
       [[ " "$(echo $_lcparallel_file_opts)" " == *" $prev "* ]]; }; then
    compopt -o filenames 2>/dev/null
    COMPREPLY=($(compgen -f -- "$cur"))
    return 0
  fi
  # --joblog=FILE and the like.
  if [[ -z $in_cmd && $cur == --*=* ]]; then
    local name=${cur%%=*}
    if [[ " "$(echo $_lcparallel_file_opts)" " == *" $name "* ]]; then
      compopt -o filenames 2>/dev/null
      COMPREPLY=($(compgen -f -- "${cur#*=}"))
    fi
    return 0
  fi
  # Any other option's value: a number, a string; nothing to offer.
  [[ -z $in_cmd && -n $expect_value ]] && return 0

  if [[ -n $in_cmd ]]; then
    compopt -o default 2>/dev/null
    COMPREPLY=($(compgen -f -- "$cur"))
    return 0
  fi
  if [[ $cur == -* ]]; then
    COMPREPLY=($(compgen -W "$_lcparallel_opts" -- "$cur"))
    return 0
  fi
  # The first word that is not an option: the command.
  COMPREPLY=($(compgen -c -- "$cur"))
  return 0
}

complete -F _lcparallel lcparallel
