"""llama.cpp's SentencePiece tokenizer, reproduced exactly, for the vocabulary a GGUF carries.

The catalog reads the vocabulary from a GGUF ModelCar (`models_catalog.scanning.gguf_vocab`);
the gateway counts tokens with this class when a model server reports no usage, and gets the
numbers llama.cpp itself would (`llama_tokenize` with special tokens parsed):

1. special tokens (control, user-defined and unknown ones; longest text first) split the
   text into fragments and count as one token each;
2. each text fragment gets a leading space after a special token when the vocabulary asks
   for it (`add_space_prefix`), spaces become "▁", and the UTF-8 characters are merged
   pairwise, always the adjacent pair whose merged text is the highest-scoring token (the
   leftmost one on a tie), as long as a merge exists;
3. a symbol left without a token is spelled in byte tokens (`<0xNN>`).
"""

from __future__ import annotations

import heapq
import json

DOCUMENT_FORMAT = "gguf-spm"

# GGUF token types
_NORMAL, _UNKNOWN, _CONTROL, _USER_DEFINED, _UNUSED, _BYTE = 1, 2, 3, 4, 5, 6
# Tokens llama.cpp treats as control tokens whatever type the file gives them (end-of-turn and
# end-of-generation markers it recognises by their text).
_CONTROL_BY_TEXT = frozenset({
    "<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>",
    "<|end_of_text|>", "<EOT>", "_<EOT>", "[EOT]", "<｜end▁of▁sentence｜>",
    "<end_of_utterance>", "<|eom_id|>", "<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>",
    "<|fim_pad|>", "<|repo_name|>", "<|file_sep|>",
})
_UTF8_LENGTH = (1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4)
_SPACE, _ESCAPED_SPACE = b" ", "\u2581".encode()


class SpmTokenizer:
    def __init__(self, document: dict):
        tokens: list[str] = document["tokens"]
        self.scores: list[float] = document["scores"]
        self.add_space_prefix = bool(document.get("add_space_prefix", True))
        self.bos_id = document.get("bos_id")
        self.add_bos = bool(document.get("add_bos", True)) and self.bos_id is not None
        self.ids: dict[bytes, int] = {}
        specials = []
        for index, text in enumerate(tokens):
            encoded = (text or f"[EMPTY_{index}]").encode()
            self.ids[encoded] = index  # a later duplicate wins, as in llama.cpp
            kind = document["types"][index]
            if kind in (_CONTROL, _USER_DEFINED, _UNKNOWN) or text in _CONTROL_BY_TEXT:
                specials.append((len(encoded), index, encoded))
        specials.sort(key=lambda item: -item[0])
        self.specials = [(encoded, index) for _, index, encoded in specials]

    @classmethod
    def from_str(cls, document: str) -> SpmTokenizer:
        return cls(json.loads(document))

    # --- counting -------------------------------------------------------------------------

    def count(self, text: str, *, add_bos: bool = False) -> int:
        return len(self.encode(text, add_bos=add_bos))

    def encode(self, text: str, *, add_bos: bool = False) -> list[int]:
        output: list[int] = []
        if add_bos and self.add_bos:
            output.append(self.bos_id)
        previous_special = True
        for fragment in self._partition(text.encode()):
            if isinstance(fragment, int):
                output.append(fragment)
                previous_special = True
                continue
            if self.add_space_prefix and previous_special:
                fragment = _SPACE + fragment
            self._merge(fragment.replace(_SPACE, _ESCAPED_SPACE), output)
            previous_special = False
        return output

    # --- the steps --------------------------------------------------------------------------

    def _partition(self, raw: bytes) -> list[bytes | int]:
        """Split out special tokens, longest first: text fragments (bytes) and token ids."""
        fragments: list[bytes | int] = [raw] if raw else []
        for special, token in self.specials:
            if not any(isinstance(f, bytes) and special in f for f in fragments):
                continue
            split: list[bytes | int] = []
            for fragment in fragments:
                if isinstance(fragment, int) or special not in fragment:
                    split.append(fragment)
                    continue
                pieces = fragment.split(special)
                for number, piece in enumerate(pieces):
                    if number:
                        split.append(token)
                    if piece:
                        split.append(piece)
            fragments = split
        return fragments

    def _merge(self, text: bytes, output: list[int]) -> None:
        # symbols: [start, length, previous, next]; a merged-away symbol has length 0
        symbols = []
        offset = 0
        while offset < len(text):
            length = min(_UTF8_LENGTH[text[offset] >> 4], len(text) - offset)
            symbols.append([offset, length, len(symbols) - 1, len(symbols) + 1])
            offset += length
        if not symbols:
            return
        symbols[-1][3] = -1
        queue: list[tuple[float, int, int, int]] = []

        def add_pair(left: int, right: int) -> None:
            if left == -1 or right == -1:
                return
            start = symbols[left][0]
            size = symbols[left][1] + symbols[right][1]
            token = self.ids.get(text[start:start + size])
            if token is not None:
                heapq.heappush(queue, (-self.scores[token], left, right, size))

        for index in range(1, len(symbols)):
            add_pair(index - 1, index)
        while queue:
            _score, left, right, size = heapq.heappop(queue)
            left_symbol, right_symbol = symbols[left], symbols[right]
            if (not left_symbol[1] or not right_symbol[1]
                    or left_symbol[1] + right_symbol[1] != size):
                continue  # one side was merged into something else meanwhile
            left_symbol[1] = size
            right_symbol[1] = 0
            left_symbol[3] = right_symbol[3]
            if right_symbol[3] >= 0:
                symbols[right_symbol[3]][2] = left
            add_pair(left_symbol[2], left)
            add_pair(left, left_symbol[3])
        index = 0
        while index != -1:
            start, length, _previous, following = symbols[index]
            piece = text[start:start + length]
            token = self.ids.get(piece)
            if token is not None:
                output.append(token)
            else:  # a character the vocabulary lacks: its bytes
                output.extend(self._byte_token(byte) for byte in piece)
            index = following

    def _byte_token(self, byte: int) -> int:
        token = self.ids.get(f"<0x{byte:02X}>".encode())
        if token is None:
            token = self.ids.get(bytes([byte]))
        if token is None:
            raise KeyError(f"the vocabulary has no token for byte {byte:#04x}")
        return token
