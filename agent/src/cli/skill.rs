//! `tether skill`: a guide for AI agents driving sessions with the CLI.

pub const SKILL: &str = "\
# Driving terminals with tether (guide for AI agents)

Sessions are real terminals owned by a background agent: they keep running when you disconnect,
and everything they print is kept. Ids are short; any unique prefix works; no id = newest.

  tether start --detach --title build -- make test     # prints the session id
  tether send ID 'ls -la' key:enter                     # type text, then press Enter
  tether send ID key:ctrl+c                             # interrupt
  tether logs ID --tail 50                              # last 50 lines, colours stripped
  tether logs ID --wait-for-prompt --timeout 60s --tail 20
        # wait until the program waits for input (a prompt, then silence); exit 124 on timeout
  tether ls --json                                      # status, exit code, waiting_for_input
  tether stop ID --grace 5s                             # SIGTERM, then SIGKILL
  tether start --detach --notify -- ./deploy.sh         # run the configured hook when it needs you

Keys: key:enter tab shift+tab esc backspace up down left right home end pageup pagedown delete
insert ctrl+<letter> alt+<char>; raw bytes: hex:1b5b41. Text is sent exactly as given (no newline):
add key:enter. Piped stdin is sent as text: printf 'y\\n' | tether send ID

Loop that works: send a command, `logs --wait-for-prompt --tail N` to read the result, decide,
repeat. `ls` shows INPUT=yes for sessions waiting on you (y/n, password, continue?, shell prompt).

Files on a host (HOST: an invite, a name from `tether hosts add`, or `local`), like scp:

  tether cp --json report.txt HOST:/tmp/              # atomic; a lost link resumes by itself
  tether cp -r HOST:project/logs ./logs                 # exit code non-zero if any file failed
  tether fs ls --json HOST:/var/log                     # one JSON entry per line
  tether fs stat --json HOST:path   fs mkdir -p HOST:a/b   fs mv HOST:a HOST:b   fs rm HOST:x

Show a person a file: `tether open FILE` run inside a session opens it in the editor of every
browser showing that session (exit 1 when none does).
";
