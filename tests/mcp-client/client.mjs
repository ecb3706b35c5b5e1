// Connects the official MCP TypeScript SDK client to a CAP agent's MCP endpoint over
// Streamable HTTP, lists the tools, calls the ones given, and prints one JSON line:
//   node client.mjs URL TOKEN '[{"name": "...", "arguments": {...}}]'
//   -> {"server": {...}, "protocol": "...", "tools": [...], "calls": [...]}
//      or {"error": "..."} when connecting or listing fails.
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";

const [url, token, callsJson] = process.argv.slice(2);
const headers = token ? { Authorization: `Bearer ${token}` } : {};
const transport = new StreamableHTTPClientTransport(new URL(url), { requestInit: { headers } });
const client = new Client({ name: "cap-integration-test", version: "1.0.0" });

try {
  await client.connect(transport);
  const out = {
    server: client.getServerVersion(),
    protocol: transport.protocolVersion ?? null,
    instructions: client.getInstructions() ?? null,
    tools: (await client.listTools()).tools,
    calls: [],
  };
  for (const call of JSON.parse(callsJson || "[]")) {
    try {
      out.calls.push(await client.callTool({ name: call.name, arguments: call.arguments }));
    } catch (e) {
      out.calls.push({ thrown: String(e?.message ?? e) });
    }
  }
  await client.close();
  console.log(JSON.stringify(out));
} catch (e) {
  console.log(JSON.stringify({ error: String(e?.message ?? e) }));
}
