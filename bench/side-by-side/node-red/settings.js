// Node-RED settings for CAP's side-by-side benchmark (bench/side-by-side/run sets the
// environment): the HTTP nodes on BENCH_PORT at 127.0.0.1, no editor or admin API, logs at
// warn, no telemetry. For W3 the blacklist CSV (BENCH_BLACKLIST_CSV) is loaded once here into
// a Map in the global context, as nginx+Lua loads it in init_by_lua.
const fs = require("fs");

// One CSV record: fields separated by commas, optionally in double quotes ("" is a quote).
function csvFields(line) {
  const fields = [];
  let i = 0;
  while (i <= line.length) {
    if (line[i] === '"') {
      let value = "";
      let j = i + 1;
      for (;;) {
        const q = line.indexOf('"', j);
        if (q < 0) { value += line.slice(j); i = line.length + 1; break; }
        value += line.slice(j, q);
        if (line[q + 1] === '"') { value += '"'; j = q + 2; } else { i = q + 2; break; }
      }
      fields.push(value);
    } else {
      let c = line.indexOf(",", i);
      if (c < 0) c = line.length;
      fields.push(line.slice(i, c));
      i = c + 1;
    }
  }
  return fields;
}

function loadBlacklist(path) {
  const map = new Map();
  if (!path) return map;
  const lines = fs.readFileSync(path, "utf8").split(/\r?\n/);
  for (const line of lines.slice(1)) {
    if (line === "") continue;
    const row = csvFields(line);
    map.set(row[0], row[1] ?? "");
  }
  return map;
}

module.exports = {
  uiHost: "127.0.0.1",
  uiPort: Number(process.env.BENCH_PORT || 1880),
  userDir: process.env.BENCH_USER_DIR,
  flowFile: process.env.BENCH_FLOW_FILE || "flows.json",
  flowFilePretty: false,
  credentialSecret: false,
  httpAdminRoot: false,
  disableEditor: true,
  httpNodeRoot: "/",
  httpStatic: false,
  logging: { console: { level: "warn", metrics: false, audit: false } },
  telemetry: { enabled: false },
  diagnostics: { enabled: false },
  runtimeState: { enabled: false },
  externalModules: { autoInstall: false, palette: { allowInstall: false }, modules: { allowInstall: false } },
  functionExternalModules: false,
  contextStorage: { default: { module: "memory" } },
  functionGlobalContext: { blacklist: loadBlacklist(process.env.BENCH_BLACKLIST_CSV) },
  exportGlobalContextKeys: false,
};
