/* SPDX-License-Identifier: MIT */
/*
 * Reads SentencePiece's tokenizer.model: a protobuf ModelProto with
 *   1: repeated SentencePiece { 1: piece, 2: score (float), 3: type }
 *   2: TrainerSpec { 3: model_type, 35: byte_fallback, 40..43: unk/bos/eos/pad id }
 *   3: NormalizerSpec { 3: add_dummy_prefix, 4: remove_extra_whitespaces }
 * Only the fields above are read; every other field is skipped by wire type.
 */
#include <fcntl.h>
#include <sys/stat.h>

#include "vocab.h"

struct pb {
        const uint8_t *p, *end;
};

enum { WIRE_VARINT = 0, WIRE_I64 = 1, WIRE_LEN = 2, WIRE_I32 = 5 };

static int pb_varint(struct pb *b, uint64_t *ret)
{
        uint64_t v = 0;
        for (int shift = 0; shift < 64; shift += 7) {
                if (b->p >= b->end)
                        return -EBADMSG;
                uint8_t c = *b->p++;
                v |= (uint64_t)(c & 0x7f) << shift;
                if (!(c & 0x80)) {
                        *ret = v;
                        return 0;
                }
        }
        return -EBADMSG;
}

struct pb_field {
        uint32_t num;
        uint32_t wire;
        uint64_t varint;
        uint32_t i32;
        struct pb sub;
};

static int pb_next(struct pb *b, struct pb_field *f)
{
        uint64_t key, len;
        int r = pb_varint(b, &key);
        if (r < 0)
                return r;
        f->num = (uint32_t)(key >> 3);
        f->wire = key & 7;
        switch (f->wire) {
        case WIRE_VARINT:
                return pb_varint(b, &f->varint);
        case WIRE_I64:
                if (b->end - b->p < 8)
                        return -EBADMSG;
                b->p += 8;
                return 0;
        case WIRE_I32:
                if (b->end - b->p < 4)
                        return -EBADMSG;
                memcpy(&f->i32, b->p, 4);
                b->p += 4;
                return 0;
        case WIRE_LEN:
                r = pb_varint(b, &len);
                if (r < 0 || len > (uint64_t)(b->end - b->p))
                        return -EBADMSG;
                f->sub = (struct pb) { b->p, b->p + len };
                b->p += len;
                return 0;
        default:
                return -EBADMSG;
        }
}

struct spm_piece {
        struct pb text;
        float score;
        uint32_t type;
};

static int parse_piece(struct pb b, struct spm_piece *ret)
{
        struct pb_field f;
        int r;

        *ret = (struct spm_piece) { .type = VOCAB_TOKEN_NORMAL };
        while (b.p < b.end) {
                r = pb_next(&b, &f);
                if (r < 0)
                        return r;
                if (f.num == 1 && f.wire == WIRE_LEN)
                        ret->text = f.sub;
                else if (f.num == 2 && f.wire == WIRE_I32)
                        memcpy(&ret->score, &f.i32, 4);
                else if (f.num == 3 && f.wire == WIRE_VARINT)
                        ret->type = (uint32_t)f.varint;
        }
        return 0;
}

struct spm_spec {
        int64_t model_type;
        bool byte_fallback;
        int64_t unk, bos, eos, pad;
        bool add_dummy_prefix, remove_extra_whitespaces;
};

static int parse_trainer(struct pb b, struct spm_spec *s)
{
        struct pb_field f;
        while (b.p < b.end) {
                int r = pb_next(&b, &f);
                if (r < 0)
                        return r;
                if (f.wire != WIRE_VARINT)
                        continue;
                switch (f.num) {
                case 3: s->model_type = (int64_t)f.varint; break;
                case 35: s->byte_fallback = f.varint != 0; break;
                case 40: s->unk = (int32_t)f.varint; break;
                case 41: s->bos = (int32_t)f.varint; break;
                case 42: s->eos = (int32_t)f.varint; break;
                case 43: s->pad = (int32_t)f.varint; break;
                }
        }
        return 0;
}

static int parse_normalizer(struct pb b, struct spm_spec *s)
{
        struct pb_field f;
        while (b.p < b.end) {
                int r = pb_next(&b, &f);
                if (r < 0)
                        return r;
                if (f.wire != WIRE_VARINT)
                        continue;
                if (f.num == 3)
                        s->add_dummy_prefix = f.varint != 0;
                else if (f.num == 4)
                        s->remove_extra_whitespaces = f.varint != 0;
        }
        return 0;
}

int vocab_from_spm_buffer(const uint8_t *buf, size_t size, struct npu_vocab **ret, struct npu_err *err)
{
        _cleanup_(vocab_freep) struct npu_vocab *v = NULL;
        struct spm_spec spec = { .model_type = 1, .unk = 0, .bos = 1, .eos = 2, .pad = -1,
                                 .add_dummy_prefix = true, .remove_extra_whitespaces = true };
        struct pb b = { buf, buf + size };
        struct pb_field f;
        int32_t n = 0;
        int r;

        /* first pass: count pieces and read the specs */
        while (b.p < b.end) {
                r = pb_next(&b, &f);
                if (r < 0)
                        return npu_err_set(err, r, "malformed protobuf at byte %td", b.p - buf);
                if (f.num == 1 && f.wire == WIRE_LEN) {
                        if (n == INT32_MAX / 4)
                                return npu_err_set(err, -EBADMSG, "too many pieces");
                        n++;
                } else if (f.num == 2 && f.wire == WIRE_LEN)
                        r = parse_trainer(f.sub, &spec);
                else if (f.num == 3 && f.wire == WIRE_LEN)
                        r = parse_normalizer(f.sub, &spec);
                if (r < 0)
                        return npu_err_set(err, r, "malformed trainer or normalizer spec");
        }
        if (n == 0)
                return npu_err_set(err, -EBADMSG, "no pieces: not a SentencePiece model");
        if (spec.model_type != 2)
                return npu_err_set(err, -EOPNOTSUPP, "SentencePiece model type %lld is not BPE (2)",
                                   (long long)spec.model_type);

        r = vocab_alloc(n, &v);
        if (r < 0)
                return r;
        b = (struct pb) { buf, buf + size };
        for (int32_t i = 0; b.p < b.end;) {
                r = pb_next(&b, &f);
                if (r < 0)
                        return r;
                if (f.num != 1 || f.wire != WIRE_LEN)
                        continue;
                struct spm_piece p;
                r = parse_piece(f.sub, &p);
                if (r < 0)
                        return npu_err_set(err, r, "malformed piece %d", i);
                size_t len = (size_t)(p.text.end - p.text.p);
                if (len == 0 || len > 1024 || memchr(p.text.p, 0, len))
                        return npu_err_set(err, -EBADMSG, "piece %d has bad text (%zu bytes)", i, len);
                if (p.type < 1 || p.type > VOCAB_TOKEN_BYTE)
                        return npu_err_set(err, -EBADMSG, "piece %d has unknown type %u", i, p.type);
                v->tokens[i] = (struct vocab_entry) { .piece = strndup((const char *)p.text.p, len),
                                                      .len = (uint32_t)len, .score = p.score,
                                                      .type = (uint8_t)p.type };
                if (!v->tokens[i].piece)
                        return -ENOMEM;
                i++;
        }
        v->unk = spec.unk < n ? (int32_t)spec.unk : -1;
        v->bos = spec.bos < n ? (int32_t)spec.bos : -1;
        v->eos = spec.eos < n ? (int32_t)spec.eos : -1;
        v->pad = spec.pad < n ? (int32_t)spec.pad : -1;
        v->add_space_prefix = spec.add_dummy_prefix;
        v->remove_extra_whitespaces = spec.remove_extra_whitespaces;
        r = vocab_finish(v, err);
        if (r < 0)
                return r;
        v->byte_fallback = spec.byte_fallback;
        for (int i = 0; i < 256 && v->byte_fallback; i++)
                if (v->byte_ids[i] < 0)
                        return npu_err_set(err, -EBADMSG, "byte_fallback set but piece <0x%02X> is missing", i);
        *ret = TAKE_PTR(v);
        return 0;
}

int vocab_from_spm_file(const char *path, struct npu_vocab **ret, struct npu_err *err)
{
        _cleanup_fclose_ FILE *f = fopen(path, "re");
        _cleanup_free_ uint8_t *buf = NULL;
        struct stat st;

        if (!f)
                return npu_err_set(err, -errno, "cannot open %s: %s", path, strerror(errno));
        if (fstat(fileno(f), &st) < 0 || !S_ISREG(st.st_mode) || st.st_size > (64 << 20))
                return npu_err_set(err, -EINVAL, "%s: not a regular file under 64 MiB", path);
        buf = malloc(st.st_size ? st.st_size : 1);
        if (!buf)
                return -ENOMEM;
        if (fread(buf, 1, st.st_size, f) != (size_t)st.st_size)
                return npu_err_set(err, -EIO, "reading %s failed", path);
        int r = vocab_from_spm_buffer(buf, st.st_size, ret, err);
        if (r < 0)
                npu_err_prefix(err, path);
        return r;
}
