// SPDX-License-Identifier: MIT
// A slowloris client: connects to a Unix socket, sends a request's headers
// one byte every 200 ms (or, with "body", the headers at once and the body
// that slowly), never finishing, and prints how long the server took to
// close the connection ("closed after N ms", or "open after N ms").
//   node slow-client.cjs SOCKET headers|body SECONDS
'use strict';
const net = require('net');

const [sock, mode, secs] = process.argv.slice(2);
const head = 'POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n';
const t0 = Date.now();
const c = net.connect(sock);
let text = mode === 'body' ? '' : head + 'X-Slow: ' + 'a'.repeat(10000) + '\r\n\r\n';
if (mode === 'body')
        c.write(head + 'Content-Length: 10000\r\n\r\n');
const timer = setInterval(() => {
        if (mode === 'body')
                c.write(' ');
        else if (text.length)
                c.write(text[0]), (text = text.slice(1));
}, 200);
function end(what) {
        clearInterval(timer);
        console.log(`${what} after ${Date.now() - t0} ms`);
        c.destroy();
        process.exit(0);
}
c.on('close', () => end('closed'));
c.on('error', () => end('closed'));
c.on('data', () => {});
setTimeout(() => end('open'), Number(secs) * 1000);
