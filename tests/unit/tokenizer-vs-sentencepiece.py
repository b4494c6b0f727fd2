#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Compare npu-run --tokenize with SentencePiece itself (python3-sentencepiece)
on a broad set of inputs, for both Llama 2 vocabulary sources: the
tokenizer.model protobuf and the vocab-only GGUF."""
import random
import subprocess
import sys

import sentencepiece

npu_run, spm_model, gguf_vocab = sys.argv[1:4]
sp = sentencepiece.SentencePieceProcessor(model_file=spm_model)

inputs = [
    "Hello world", "Hello  world", " Hello world", "Hello world ", "   ",  " ", "a",
    "line one\nline two", "\n\n\n", "trailing newline\n", "\ttab\t and  spaces   ",
    "mixed \t\n whitespace \r\n windows", "héllo wörld café naïve façade", "Ærøskøbing ÅÄÖ",
    "Привет мир, как дела?", "Ελληνικά γράμματα", "日本語のテキストと漢字", "中文分词测试，标点。",
    "한국어 문장입니다", "emoji 🎉🚀 end", "👩‍👩‍👧‍👦 family", "🙂🙃😉", "1234567890 3.14159",
    "2024-11-28T01:02:03Z", "0x7fffffff + 1 == -2147483648",
    "def f(x):\n    return x**2  # sq", "int main(void) { return 0; }",
    "<s> literal </s>", "<unk> <0x0A>", "What is the meaning of life?",
    "Tell me something you don't know.", "What does Xilinx do?", "What is the mass of earth?",
    "Once upon a time", "The quick brown fox jumps over the lazy dog.",
    "ﬁ ligature and ½ fraction", "\u00a0non-breaking\u00a0space", "zero\u200bwidth",
    "a" * 300, "ab " * 100, "🎉" * 20,
]
rng = random.Random(1234)
alphabet = "abc xyz ÄéБж日本🎉\n\t.,!?0123456789" 
for _ in range(60):
    inputs.append("".join(rng.choice(alphabet) for _ in range(rng.randint(1, 40))))

failed = 0
for vocab in (spm_model, gguf_vocab):
    for text in inputs:
        want = [1] + sp.encode(text)
        out = subprocess.run([npu_run, "-m", vocab, "--tokenize", text], capture_output=True, text=True)
        got = [int(t) for t in out.stdout.split()] if out.returncode == 0 else None
        if got != want:
            failed += 1
            print(f"MISMATCH ({vocab}) {text!r}\n  want {want}\n  got  {got} {out.stderr.strip()}")
print(f"{2 * len(inputs) - failed} of {2 * len(inputs)} tokenizations match SentencePiece")
sys.exit(1 if failed else 0)
