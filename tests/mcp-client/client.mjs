// Connects the official MCP TypeScript SDK client to a CAP agent's MCP endpoint over
// Streamable HTTP, lists the tools, calls the ones given, and prints one JSON line:
//   node client.mjs URL TOKEN '[{"name": "...", "arguments": {...}}]'
//   node client.mjs URL TOKEN '{"calls": [...], "progress": true, "listen": true, "terminate": true}'
//   -> {"server": {...}, "protocol": "...", "session": "...", "tools": [...], "calls": [...],
//       "requests": [...]} or {"error": "..."} when connecting or listing fails.
// Options:
//   progress   each call asks for progress; every notification is printed at once as a line
//              {"progress": {...}} (so a test can react to it) and kept in "progress"
//   listen     once the session's GET event stream is open, prints {"event": "stream-open"},
//              waits for notifications/tools/list_changed, then lists the tools again
//              ("tools_after")
//   terminate  ends the session with DELETE (transport.terminateSession) before closing
// "requests" records every HTTP request the transport made: method, the Mcp-Session-Id it
// sent, the status and the content type of the answer.
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { ToolListChangedNotificationSchema } from "@modelcontextprotocol/sdk/types.js";

const [url, token, optionsJson] = process.argv.slice(2);
const parsed = JSON.parse(optionsJson || "[]");
const options = Array.isArray(parsed) ? { calls: parsed } : parsed;
const headers = token ? { Authorization: `Bearer ${token}` } : {};
const requests = [];
let streamOpened;
const streamOpen = new Promise((resolve) => (streamOpened = resolve));

async function recordingFetch(input, init) {
  const sent = new Headers(init?.headers);
  const response = await fetch(input, init);
  const entry = {
    method: init?.method ?? "GET",
    session: sent.get("mcp-session-id"),
    status: response.status,
    contentType: response.headers.get("content-type"),
  };
  requests.push(entry);
  if (entry.method === "GET" && response.ok) streamOpened();
  return response;
}

const transport = new StreamableHTTPClientTransport(new URL(url), {
  requestInit: { headers },
  fetch: recordingFetch,
  // A stream the server ends is not reopened (the test ends sessions on purpose).
  reconnectionOptions: { initialReconnectionDelay: 1000, maxReconnectionDelay: 1000,
                         reconnectionDelayGrowFactor: 1, maxRetries: 0 },
});
const client = new Client({ name: "cap-integration-test", version: "1.0.0" });

function withTimeout(promise, ms, what) {
  return Promise.race([promise, new Promise((_, reject) =>
    setTimeout(() => reject(new Error(`no ${what} within ${ms} ms`)), ms))]);
}

try {
  let listChanged;
  const changed = new Promise((resolve) => (listChanged = resolve));
  client.setNotificationHandler(ToolListChangedNotificationSchema, () => listChanged());
  await client.connect(transport);
  const out = {
    server: client.getServerVersion(),
    protocol: transport.protocolVersion ?? null,
    capabilities: client.getServerCapabilities() ?? null,
    instructions: client.getInstructions() ?? null,
    session: transport.sessionId ?? null,
    tools: (await client.listTools()).tools,
    calls: [],
    progress: [],
  };
  for (const call of options.calls ?? []) {
    const requestOptions = {};
    if (options.progress) {
      requestOptions.onprogress = (p) => {
        out.progress.push(p);
        console.log(JSON.stringify({ progress: p }));
      };
      requestOptions.resetTimeoutOnProgress = true;
    }
    try {
      out.calls.push(await client.callTool({ name: call.name, arguments: call.arguments },
                                           undefined, requestOptions));
    } catch (e) {
      out.calls.push({ thrown: String(e?.message ?? e) });
    }
  }
  if (options.listen) {
    await withTimeout(streamOpen, 60000, "GET event stream");
    console.log(JSON.stringify({ event: "stream-open" }));
    await withTimeout(changed, 120000, "notifications/tools/list_changed");
    out.tools_after = (await client.listTools()).tools;
  }
  out.session_after_calls = transport.sessionId ?? null;
  if (options.terminate) {
    await transport.terminateSession();
    out.session_after_terminate = transport.sessionId ?? null;
  }
  await client.close();
  out.requests = requests;
  console.log(JSON.stringify(out));
} catch (e) {
  console.log(JSON.stringify({ error: String(e?.message ?? e), requests }));
}
process.exit(0);
