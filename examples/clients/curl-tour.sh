#!/usr/bin/env bash
# A tour of the Tower API through tower-proxy with plain curl: no token and no
# Authorization header anywhere — the proxy adds them. Try it against
# `tower-proxy sandbox` (or a proxy logged in to your real team: it creates,
# edits and deletes one todo in the first todolist of your first project).
#
#   examples/clients/curl-tour.sh [API]     # default http://127.0.0.1:8730/api/v1
#
# Needs curl and jq. Stops at the first unexpected answer (exit 1).
set -euo pipefail

API=${1:-${TOWER_PROXY_API:-http://127.0.0.1:8730/api/v1}}
API=${API%/}

die() { echo "curl-tour: $*" >&2; exit 1; }

# call METHOD PATH-or-URL [JSON-BODY]: print the body; any status >= 400 fails.
call() {
  local method=$1 target=$2 url
  case $target in http://* | https://*) url=$target ;; *) url=$API$target ;; esac
  if [ $# -ge 3 ]; then
    curl -sS --fail-with-body -X "$method" -H 'Content-Type: application/json' --data "$3" "$url"
  else
    curl -sS --fail-with-body -X "$method" "$url"
  fi
}

# status METHOD PATH: print only the HTTP status code.
status() {
  curl -sS -o /dev/null -w '%{http_code}' -X "$1" "$API$2"
}

echo "== who am I"
email=$(call GET /user | jq -er '.data.attributes.email')
echo "user: $email"

echo "== list: teams, projects, todolists, todos"
team=$(call GET /teams | jq -er '.data[0].id')
project=$(call GET "/teams/$team/projects" | jq -er '.data[0].id')
list=$(call GET "/projects/$project/todolists" | jq -er '.data[0].id')
open=$(call GET "/todolists/$list/todos" | jq -er '.data | length')
echo "team: $team project: $project todolist: $list open todos: $open"

echo "== create a todo (Rails-style JSON body)"
todo=$(call POST "/todolists/$list/todos" '{"todo":{"content":"Written by curl-tour.sh"}}' |
  jq -er '.data.id')
echo "created todo: $todo"
[ "$(call GET "/todolists/$list/todos" | jq --arg id "$todo" '[.data[].id] | index($id) != null')" = true ] ||
  die "the new todo is not listed"

echo "== update it"
content=$(call PATCH "/todos/$todo" '{"todo":{"content":"Edited by curl-tour.sh"}}' |
  jq -er '.data.attributes.content')
[ "$content" = "Edited by curl-tour.sh" ] || die "update not applied: $content"
completed=$(call POST "/todos/$todo/completion" | jq -er '.data.attributes.is_completed')
[ "$completed" = true ] || die "completion not applied"
echo "updated todo: $todo (completed)"

echo "== delete it"
code=$(status DELETE "/todos/$todo")
[ "$code" = 204 ] || die "DELETE answered $code, not 204"
code=$(status GET "/todos/$todo")
[ "$code" = 404 ] || die "the deleted todo answered $code, not 404"
echo "deleted todo: $todo"

echo "== page through the team's members by following links.next"
url="$API/teams/$team/members?page%5Bsize%5D=1"
pages=0 members=0
while [ -n "$url" ]; do
  case $url in "$API"/*) ;; *) die "links.next leaves the proxy: $url" ;; esac
  page=$(call GET "$url")
  pages=$((pages + 1))
  members=$((members + $(jq '.data | length' <<<"$page")))
  url=$(jq -r '.links.next // empty' <<<"$page")
  [ $pages -le 100 ] || die "more than 100 pages"
done
echo "members: $members over $pages pages"

echo "tour ok"
