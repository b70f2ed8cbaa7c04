#!/usr/bin/env node
// Calling the Tower API through tower-proxy from Node with the built-in fetch
// (Node 18+): no OAuth library, no token, no Authorization header.
//
//   node examples/clients/node-fetch.mjs [API]   # default http://127.0.0.1:8730/api/v1
//
// It lists the first team's projects and todos, creates a todo, completes and
// deletes it, and pages through the members by following links.next. The last
// line of output is a JSON summary; exit 1 at the first unexpected answer.

const api = (process.argv[2] || process.env.TOWER_PROXY_API || "http://127.0.0.1:8730/api/v1").replace(/\/$/, "");

async function call(method, target, body) {
  const url = target.startsWith("http") ? target : api + target;
  const init = { method, headers: {} };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await fetch(url, init);
  const text = await response.text();
  const proxyError = response.headers.get("x-tower-proxy-error");
  return { status: response.status, proxyError, json: text ? JSON.parse(text) : null };
}

async function ok(method, target, body) {
  const answer = await call(method, target, body);
  if (answer.status >= 400) {
    const who = answer.proxyError ? `the proxy (${answer.proxyError})` : "Tower";
    throw new Error(`${method} ${target}: ${answer.status} from ${who}`);
  }
  return answer.json;
}

async function main() {
  const user = await ok("GET", "/user");
  const team = (await ok("GET", "/teams")).data[0].id;
  const projects = (await ok("GET", `/teams/${team}/projects`)).data;
  const list = (await ok("GET", `/projects/${projects[0].id}/todolists`)).data[0].id;

  const created = await ok("POST", `/todolists/${list}/todos`, { todo: { content: "Written by node-fetch.mjs" } });
  const todo = created.data.id;
  const done = await ok("POST", `/todos/${todo}/completion`);
  if (done.data.attributes.is_completed !== true) throw new Error("completion not applied");
  const deleted = await call("DELETE", `/todos/${todo}`);
  const gone = await call("GET", `/todos/${todo}`);

  const members = [];
  let next = `${api}/teams/${team}/members?page%5Bsize%5D=1`;
  let pages = 0;
  while (next) {
    if (!next.startsWith(api + "/")) throw new Error(`links.next leaves the proxy: ${next}`);
    const page = await ok("GET", next);
    members.push(...page.data.map((member) => member.attributes.nickname));
    next = page.links.next;
    if (++pages > 100) throw new Error("more than 100 pages");
  }

  console.log(`${user.data.attributes.email}: ${projects.length} projects; todo ${todo} created, completed, deleted`);
  console.log(JSON.stringify({
    email: user.data.attributes.email,
    projects: projects.length,
    todo,
    deleteStatus: deleted.status,
    afterDeleteStatus: gone.status,
    members,
    pages,
  }));
}

main().catch((error) => {
  console.error(`node-fetch: ${error.message}`);
  process.exit(1);
});
