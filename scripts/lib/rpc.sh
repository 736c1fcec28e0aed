# Sourced by scripts that talk to a local chain: `rpc METHOD PARAMS_JSON` sends one JSON-RPC
# request to $RPC with node's fetch and prints the result as JSON (exit 1 on an error answer).
rpc() {
  node -e '
    fetch(process.argv[1], {method: "POST", headers: {"content-type": "application/json"},
      body: JSON.stringify({jsonrpc: "2.0", id: 1, method: process.argv[2], params: JSON.parse(process.argv[3])})})
      .then(r => r.json()).then(j => { if (j.error) { console.error(JSON.stringify(j.error)); process.exit(1) }
        console.log(JSON.stringify(j.result)) }).catch(() => process.exit(1))' "$RPC" "$1" "$2"
}
