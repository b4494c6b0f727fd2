// SPDX-License-Identifier: MIT
// npud-http through the official `openai` npm package (a client no one here
// wrote), over TCP with the bearer key. Run by run-tests.sh with:
//   NODE_DEPS   the folder whose node_modules has openai
//   HTTP_URL    http://127.0.0.1:PORT/v1      HTTP_KEY  the bearer key
//   MODEL       the loaded model's name        EXPECTED  a file with `npuctl generate --temp 0 -n 60` output
//   PROMPT      that prompt                    PROBE     npud-probe, BUS the bus address (npud's counters)
//   CHAT_MODEL  a model with a chat template, for the chats
//   KV_HELD     1: a session holds KV blocks throughout (the aborts return to that use, not to 0)
//   CHAT_EXPECTED  api-probe's output of npud's Chat (system "You are terse.", user PROMPT,
//               max_tokens 40, temperature 0) called directly on the bus
// Prints "ok NAME" or "FAIL NAME: why" per check.
'use strict';
const fs = require('fs');
const { execFileSync } = require('child_process');
const OpenAI = require(require.resolve('openai', { paths: [process.env.NODE_DEPS] }));

const env = process.env;
const client = new OpenAI({ baseURL: env.HTTP_URL, apiKey: env.HTTP_KEY, maxRetries: 0, timeout: 60000 });
const model = env.MODEL;
const prompt = env.PROMPT;
let failed = 0;

function ok(name) {
        console.log(`ok ${name}`);
}
function bad(name, why) {
        console.log(`FAIL ${name}: ${why}`);
        failed++;
}
async function check(name, fn) {
        try {
                const why = await fn();
                if (why)
                        bad(name, why);
                else
                        ok(name);
        } catch (e) {
                bad(name, `${e.constructor.name}: ${e.message}`);
        }
}
// The error a call fails with, or null.
async function failure(fn) {
        try {
                await fn();
                return null;
        } catch (e) {
                return e;
        }
}
function stats() {
        const out = execFileSync(env.PROBE, [env.BUS, 'stats'], { encoding: 'utf8' });
        const s = {};
        for (const line of out.split('\n')) {
                const i = line.indexOf('=');
                if (i > 0)
                        s[line.slice(0, i)] = Number(line.slice(i + 1));
        }
        return s;
}
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// Streams what create(signal) returns until the first chunk with text (hasText), then aborts:
// npud stops within a second and its KV cache goes back to what it was before.
async function abortCancels(create, hasText) {
        for (let i = 0; i < 100 && stats().active_requests; i++)
                await sleep(20);
        const before = stats();
        const ac = new AbortController();
        const stream = await create(ac.signal);
        let during = null;
        try {
                for await (const c of stream) {
                        if (hasText(c) && !during) {
                                during = stats();
                                ac.abort();
                                break;
                        }
                }
        } catch (e) {
                if (!(e instanceof OpenAI.APIUserAbortError) && e.name !== 'AbortError')
                        throw e;
        }
        const t0 = Date.now();
        let after;
        do {
                await sleep(20);
                after = stats();
        } while ((after.active_requests || after.kv_blocks_used !== before.kv_blocks_used) && Date.now() - t0 < 1000);
        const generated = after.generated_tokens - before.generated_tokens;
        if (env.KV_HELD === '1' && !(before.kv_blocks_used > 0))
                return `no KV blocks held before (a session of run-tests.sh holds some): ${JSON.stringify(before)}`;
        if (!during || during.active_requests < 1)
                return `not running when aborted: ${JSON.stringify(during)}`;
        if (after.active_requests || after.kv_blocks_used !== before.kv_blocks_used)
                return `after 1 s: active ${after.active_requests}, kv ${after.kv_blocks_used} (before ${before.kv_blocks_used}, during ${during.kv_blocks_used})`;
        if (generated >= 1000)
                return `all ${generated} tokens were generated: not cancelled`;
        console.log(`# aborted after ${generated} of 1000 tokens; KV blocks ${before.kv_blocks_used} -> ${during.kv_blocks_used} -> ${after.kv_blocks_used} in ${Date.now() - t0} ms`);
}

// api-probe's "stat KEY=VALUE" lines (values JSON).
function probeStats(file) {
        const s = {};
        for (const line of fs.readFileSync(file, 'utf8').split('\n')) {
                const m = /^stat ([a-z_]+)=(.*)$/.exec(line);
                if (m)
                        s[m[1]] = JSON.parse(m[2]);
        }
        return s;
}

async function main() {
        const expected = fs.readFileSync(env.EXPECTED, 'utf8').replace(/\n$/, '');

        await check('openai-models-list', async () => {
                const page = await client.models.list();
                const ids = page.data.map((m) => m.id);
                if (!ids.includes(model))
                        return `no ${model} in ${JSON.stringify(ids)}`;
                if (page.data.some((m) => m.object !== 'model' || typeof m.created !== 'number'))
                        return JSON.stringify(page.data);
        });
        await check('openai-models-retrieve', async () => {
                const m = await client.models.retrieve(model);
                if (m.id !== model || m.owned_by !== 'npud')
                        return JSON.stringify(m);
        });

        // completions at temperature 0 equal npuctl generate
        let whole;
        await check('openai-completion-equals-npuctl', async () => {
                whole = await client.completions.create({ model, prompt, max_tokens: 60, temperature: 0 });
                const text = whole.choices[0].text;
                if (text !== expected)
                        return `openai: ${JSON.stringify(text)} npuctl: ${JSON.stringify(expected)}`;
                if (whole.object !== 'text_completion' || !whole.id.startsWith('cmpl-'))
                        return JSON.stringify(whole);
                const u = whole.usage;
                if (!u || u.completion_tokens < 1 || u.total_tokens !== u.prompt_tokens + u.completion_tokens)
                        return `usage ${JSON.stringify(u)}`;
                if (!['stop', 'length'].includes(whole.choices[0].finish_reason))
                        return `finish_reason ${whole.choices[0].finish_reason}`;
        });

        await check('openai-stream-equals-whole', async () => {
                const stream = await client.completions.create({
                        model, prompt, max_tokens: 60, temperature: 0, stream: true,
                        stream_options: { include_usage: true },
                });
                let text = '', usage = null, finish = null, chunks = 0;
                for await (const c of stream) {
                        chunks++;
                        if (c.usage)
                                usage = c.usage;
                        for (const ch of c.choices) {
                                text += ch.text;
                                if (ch.finish_reason)
                                        finish = ch.finish_reason;
                        }
                }
                if (text !== whole.choices[0].text)
                        return `stream ${JSON.stringify(text)} whole ${JSON.stringify(whole.choices[0].text)}`;
                if (!usage || usage.completion_tokens !== whole.usage.completion_tokens)
                        return `usage ${JSON.stringify(usage)} whole ${JSON.stringify(whole.usage)}`;
                if (finish !== whole.choices[0].finish_reason)
                        return `finish ${finish} whole ${whole.choices[0].finish_reason}`;
                if (chunks < 3)
                        return `only ${chunks} chunks`;
        });

        await check('openai-seeded-sampling-repeats', async () => {
                const a = await client.completions.create({ model, prompt, max_tokens: 30, temperature: 0.9, seed: 7 });
                const b = await client.completions.create({ model, prompt, max_tokens: 30, temperature: 0.9, seed: 7 });
                if (a.choices[0].text !== b.choices[0].text)
                        return `${JSON.stringify(a.choices[0].text)} vs ${JSON.stringify(b.choices[0].text)}`;
        });

        await check('openai-stop-sequence', async () => {
                const words = whole.choices[0].text.trim().split(/\s+/);
                const stop = words.length > 3 ? words[3] : words[words.length - 1];
                const r = await client.completions.create({ model, prompt, max_tokens: 60, temperature: 0, stop: [stop] });
                const t = r.choices[0].text;
                if (t.includes(stop) || !whole.choices[0].text.startsWith(t) || r.choices[0].finish_reason !== 'stop')
                        return `stop ${JSON.stringify(stop)}: ${JSON.stringify(t)} (${r.choices[0].finish_reason})`;
        });

        // logprobs (legacy completions): a token, a log-probability, N alternatives and an offset per
        // token; the tokens spell the text; greedy picks the most likely; a stream carries the same
        let lpWhole;
        await check('openai-completion-logprobs', async () => {
                lpWhole = await client.completions.create({ model, prompt, max_tokens: 20, temperature: 0, logprobs: 3 });
                const c = lpWhole.choices[0], lp = c.logprobs;
                if (!lp || !Array.isArray(lp.tokens))
                        return `logprobs ${JSON.stringify(lp)}`;
                const n = lpWhole.usage.completion_tokens;
                if (lp.tokens.length !== n || lp.token_logprobs.length !== n || lp.top_logprobs.length !== n ||
                    lp.text_offset.length !== n)
                        return `lengths ${lp.tokens.length} ${lp.token_logprobs.length} ${lp.top_logprobs.length} ${lp.text_offset.length}, ${n} tokens`;
                if (lp.tokens.join('') !== c.text)
                        return `tokens ${JSON.stringify(lp.tokens)} text ${JSON.stringify(c.text)}`;
                for (let i = 0; i < n; i++) {
                        const top = Object.entries(lp.top_logprobs[i]).sort((a, b) => b[1] - a[1]);
                        if (top.length < 1 || top.length > 3 || top[0][0] !== lp.tokens[i] ||
                            Math.abs(top[0][1] - lp.token_logprobs[i]) > 1e-9 || lp.token_logprobs[i] > 0)
                                return `token ${i} ${JSON.stringify(lp.tokens[i])} ${lp.token_logprobs[i]}: ${JSON.stringify(top)}`;
                        if (lp.text_offset[i] !== c.text.slice(0, lp.text_offset[i]).length ||
                            !c.text.slice(lp.text_offset[i]).startsWith(lp.tokens[i]))
                                return `offset ${i}: ${lp.text_offset[i]}`;
                }
        });
        await check('openai-stream-logprobs-equal-whole', async () => {
                const stream = await client.completions.create({ model, prompt, max_tokens: 20, temperature: 0, logprobs: 3,
                                                                 stream: true });
                const tokens = [], lps = [];
                for await (const c of stream)
                        for (const ch of c.choices)
                                if (ch.logprobs) {
                                        tokens.push(...ch.logprobs.tokens);
                                        lps.push(...ch.logprobs.token_logprobs);
                                }
                const want = lpWhole.choices[0].logprobs;
                if (JSON.stringify(tokens) !== JSON.stringify(want.tokens) ||
                    JSON.stringify(lps) !== JSON.stringify(want.token_logprobs))
                        return `stream ${JSON.stringify(tokens)} ${JSON.stringify(lps)}`;
        });
        await check('openai-no-logprobs-unless-asked', async () => {
                if (whole.choices[0].logprobs !== null)
                        return JSON.stringify(whole.choices[0].logprobs);
        });
        // the sampling options pass through to npud: min_p 1 leaves only the most likely token
        await check('openai-min-p-passes-through', async () => {
                const r = await client.completions.create({ model, prompt, max_tokens: 60, temperature: 1.5, seed: 3, min_p: 1 });
                const hot = await client.completions.create({ model, prompt, max_tokens: 60, temperature: 1.5, seed: 3 });
                if (r.choices[0].text !== expected || hot.choices[0].text === expected)
                        return `min_p 1: ${JSON.stringify(r.choices[0].text)}; without: ${JSON.stringify(hot.choices[0].text)}`;
        });
        await check('openai-penalties-pass-through', async () => {
                const r = await client.completions.create({ model, prompt, max_tokens: 60, temperature: 0,
                                                            presence_penalty: 2, frequency_penalty: 2 });
                if (r.choices[0].text === expected)
                        return `the penalties changed nothing: ${JSON.stringify(r.choices[0].text)}`;
        });

        // errors, as the SDK's classes and OpenAI's error object
        await check('openai-error-401', async () => {
                const bad = new OpenAI({ baseURL: env.HTTP_URL, apiKey: 'not-the-key-0123456789', maxRetries: 0 });
                const e = await failure(() => bad.models.list());
                if (!(e instanceof OpenAI.AuthenticationError) || e.status !== 401 || e.code !== 'invalid_api_key')
                        return `${e && e.constructor.name} ${e && e.status} ${e && e.code}`;
        });
        await check('openai-error-404-model', async () => {
                const e = await failure(() => client.completions.create({ model: 'no-such-model', prompt }));
                if (!(e instanceof OpenAI.NotFoundError) || e.code !== 'model_not_found' || e.param !== 'model')
                        return `${e && e.constructor.name} ${e && e.status} ${e && e.code} ${e && e.param}`;
        });
        await check('openai-error-400-range', async () => {
                const e = await failure(() => client.completions.create({ model, prompt, temperature: 5 }));
                if (!(e instanceof OpenAI.BadRequestError) || e.param !== 'temperature' || e.type !== 'invalid_request_error')
                        return `${e && e.constructor.name} ${e && e.status} ${e && e.param} ${e && e.type}`;
        });
        await check('openai-error-400-type', async () => {
                const e = await failure(() => client.completions.create({ model, prompt, max_tokens: 'ten' }));
                if (!(e instanceof OpenAI.BadRequestError) || e.param !== 'max_tokens')
                        return `${e && e.constructor.name} ${e && e.status} ${e && e.param}`;
        });
        await check('openai-error-400-context', async () => {
                const long = 'the cat sat on the mat and looked at the big red ball '.repeat(300);
                const e = await failure(() => client.completions.create({ model, prompt: long, max_tokens: 4 }));
                if (!(e instanceof OpenAI.BadRequestError) || e.code !== 'context_length_exceeded')
                        return `${e && e.constructor.name} ${e && e.status} ${e && e.code}`;
        });
        // more requests at once than npud lets one client run: 429 with Retry-After, the rest served
        await check('openai-error-429', async () => {
                const calls = [];
                for (let i = 0; i < 8; i++)
                        calls.push(client.completions.create({ model, prompt, max_tokens: 600, temperature: 0, ignore_eos: true }));
                const res = await Promise.allSettled(calls);
                const limited = res.filter((r) => r.status === 'rejected' && r.reason instanceof OpenAI.RateLimitError);
                const served = res.filter((r) => r.status === 'fulfilled');
                const other = res.filter((r) => r.status === 'rejected' && !(r.reason instanceof OpenAI.RateLimitError));
                if (other.length)
                        return `other errors: ${other.map((r) => r.reason.message).join('; ')}`;
                if (!limited.length || !served.length)
                        return `${limited.length} limited, ${served.length} served`;
                const ra = limited[0].reason.headers.get('retry-after');
                if (!(Number(ra) >= 1))
                        return `Retry-After ${ra}`;
        });

        // a client that leaves in the middle of a stream: npud stops within a second and the KV cache
        // goes back to what it was
        await check('openai-abort-cancels', () => abortCancels((signal) => client.completions.create(
                { model, prompt, max_tokens: 1000, temperature: 0, ignore_eos: true, stream: true }, { signal }),
                (c) => c.choices[0] && c.choices[0].text));

        const chatModel = env.CHAT_MODEL;
        const messages = [{ role: 'system', content: 'You are terse.' }, { role: 'user', content: prompt }];
        let chat;
        await check('openai-chat', async () => {
                chat = await client.chat.completions.create({ model: chatModel, messages, max_tokens: 40, temperature: 0 });
                const m = chat.choices[0].message;
                if (chat.object !== 'chat.completion' || m.role !== 'assistant' || typeof m.content !== 'string')
                        return JSON.stringify(chat);
        });
        await check('openai-chat-stream-equals-whole', async () => {
                const stream = await client.chat.completions.create({
                        model: chatModel, messages, max_tokens: 40, temperature: 0, stream: true,
                        stream_options: { include_usage: true },
                });
                let text = '', usage = null, role = null;
                for await (const c of stream) {
                        if (c.usage)
                                usage = c.usage;
                        for (const ch of c.choices) {
                                if (ch.delta.role)
                                        role = ch.delta.role;
                                text += ch.delta.content || '';
                        }
                }
                if (text !== chat.choices[0].message.content || role !== 'assistant')
                        return `stream ${JSON.stringify(text)} (${role}) whole ${JSON.stringify(chat.choices[0].message.content)}`;
                if (!usage || usage.completion_tokens !== chat.usage.completion_tokens)
                        return `usage ${JSON.stringify(usage)}`;
        });
        await check('openai-chat-logprobs', async () => {
                const r = await client.chat.completions.create({ model: chatModel, messages, max_tokens: 20, temperature: 0,
                                                                 logprobs: true, top_logprobs: 2 });
                const content = r.choices[0].logprobs && r.choices[0].logprobs.content;
                if (!Array.isArray(content) || content.length !== r.usage.completion_tokens)
                        return JSON.stringify(r.choices[0].logprobs);
                if (content.map((t) => t.token).join('') !== r.choices[0].message.content)
                        return `tokens ${JSON.stringify(content.map((t) => t.token))}`;
                for (const t of content)
                        if (typeof t.logprob !== 'number' || !Array.isArray(t.bytes) || t.top_logprobs.length !== 2 ||
                            t.top_logprobs[0].token !== t.token)
                                return JSON.stringify(t);
        });
        // the chat goes through the model's chat template: what npud's Chat gives for the same messages
        await check('openai-chat-equals-dbus-chat', async () => {
                const want = probeStats(env.CHAT_EXPECTED);
                if (typeof want.text !== 'string' || !(want.prompt_tokens > 0))
                        return `no Chat result in ${env.CHAT_EXPECTED}`;
                if (!chat || chat.choices[0].message.content !== want.text)
                        return `gateway ${JSON.stringify(chat && chat.choices[0].message.content)} Chat ${JSON.stringify(want.text)}`;
                if (chat.usage.prompt_tokens !== want.prompt_tokens || chat.usage.completion_tokens !== want.generated_tokens)
                        return `usage ${JSON.stringify(chat.usage)}; Chat: ${want.prompt_tokens} prompt, ${want.generated_tokens} generated`;
                console.log(`# chat (${want.prompt_tokens} prompt tokens): ${JSON.stringify(want.text.slice(0, 60))}`);
        });
        await check('openai-chat-abort-cancels', () => abortCancels((signal) => client.chat.completions.create(
                { model: chatModel, messages, max_tokens: 1000, temperature: 0, ignore_eos: true, stream: true }, { signal }),
                (c) => c.choices[0] && c.choices[0].delta.content));
        await check('openai-chat-bad-messages', async () => {
                const e = await failure(() => client.chat.completions.create({ model, messages: [{ role: 'wizard', content: 'x' }] }));
                if (!(e instanceof OpenAI.BadRequestError) || e.param !== 'messages')
                        return `${e && e.constructor.name} ${e && e.status} ${e && e.param}`;
        });
}

main().then(() => process.exit(failed ? 1 : 0), (e) => {
        console.log(`FAIL openai-client: ${e.stack}`);
        process.exit(1);
});
