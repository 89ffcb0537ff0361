"""Build the fast (Rust `tokenizers`) equivalent of a Llama-style SentencePiece BPE model.

Produces the same structure as Mistral-7B's / NV-Embed-v2's tokenizer.json: BPE with byte fallback, the
legacy normaliser (prepend "▁", spaces to "▁"), no pre-tokenizer, "<s> $A" post-processing, and <unk>, <s>, </s>
as special added tokens (so a literal "</s>" in text becomes id 2, as upstream). Merges are derived from the
piece scores exactly as transformers' SentencePieceExtractor does.
"""

from __future__ import annotations

from pathlib import Path

import sentencepiece as spm
from tokenizers import AddedToken, Tokenizer, decoders, normalizers, processors
from tokenizers.models import BPE

SPECIAL_TOKENS = ("<unk>", "<s>", "</s>")


def _vocab_and_merges(sp: spm.SentencePieceProcessor) -> tuple[dict[str, int], list[tuple[str, str]]]:
    pieces = [sp.id_to_piece(i) for i in range(sp.get_piece_size())]
    scores = [sp.get_score(i) for i in range(len(pieces))]
    vocab = {piece: i for i, piece in enumerate(pieces)}
    merges: list[tuple[str, str, float]] = []
    for piece, score in zip(pieces, scores):
        local = [(piece[:k], piece[k:], score) for k in range(1, len(piece))
                 if piece[:k] in vocab and piece[k:] in vocab]
        merges.extend(sorted(local, key=lambda m: (vocab[m[0]], vocab[m[1]])))
    merges.sort(key=lambda m: m[2], reverse=True)  # stable: ties keep piece order
    return vocab, [(left, right) for left, right, _ in merges]


def fast_tokenizer_from_sentencepiece(model_file: Path) -> Tokenizer:
    sp = spm.SentencePieceProcessor(model_file=str(model_file))
    vocab, merges = _vocab_and_merges(sp)
    tok = Tokenizer(BPE(vocab, merges, unk_token="<unk>", fuse_unk=True, byte_fallback=True))
    tok.add_special_tokens([AddedToken(t, normalized=False, special=True) for t in SPECIAL_TOKENS])
    tok.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    tok.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(),
                                     decoders.Strip(" ", 1, 0)])
    tok.post_processor = processors.TemplateProcessing(
        single="<s>:0 $A:0", pair="<s>:0 $A:0 <s>:1 $B:1", special_tokens=[("<s>", vocab["<s>"])])
    return tok
