#!/bin/sh
# The image's entry point. nginx-tranproxy's arguments work unchanged:
#   IMAGE -P 80 -H a:b -- cmd   is   tranproxy run -P 80 -H a:b -- cmd
# Arguments that start with a subcommand (run, rules, inject, webhook, …) or --help/--version
# go to tranproxy as they are. TRANPROXY_DEFAULT_COMMAND= (empty) switches the rewrite off.
export TRANPROXY_DEFAULT_COMMAND="${TRANPROXY_DEFAULT_COMMAND-run}"
exec tranproxy "$@"
