"""Hugging Face Text Embeddings Inference's routes (TEI, KNOWLEDGE §7) over the same service, so Hugging Face clients
(`huggingface_hub.InferenceClient.feature_extraction`; LangChain's `HuggingFaceEndpointEmbeddings` wraps it, its
clients pointed at the server since 1.2.2 refuses a URL as model: docs/clients.md) work unmodified:
POST /embed (and POST /, TEI's route for an embedding model), /embed_all, /tokenize, /decode; GET /info, /health,
/metrics.

The fields map onto ours: `truncate` false is NONE, true with `truncation_direction` Right is END and Left is START;
`prompt_name` names one of the model's instructions (query, passage); `normalize` false is refused (NV-Embed-v2's
pooling normalises inside the engine). Errors are TEI's `{"error", "error_type"}`: 413 and 422 Validation (our 400s
are TEI's 422s), 429 Overloaded, 503 Unhealthy, 504 and 500 Backend.

/embed_all answers, per input, the states of every token the model saw (BOS, the prompt, the text, EOS: the rows of
/tokenize with add_special_tokens true, after truncation), as TEI returns every token of the encoding. They exist
only where the front door pools (a `--pooling ensemble` repository); an engine that pools in its graph is answered
424 Backend, as TEI answers `embed_all` on a model that cannot give them (SPLADE)."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import BaseModel, Field, RootModel

from .. import __version__
from ..tokenizer import INPUT_TYPES
from .schemas import STRICT, APIError, EmbeddingRequest, Text, parse_json
from .service import TOKENIZE_WORKERS, TRUNCATE_HINT

DIRECTIONS = {"right": "END", "left": "START"}   # TEI's truncation_direction -> our truncate (TEI: Right by default)
ERROR_TYPES = {413: "Validation", 422: "Validation", 429: "Overloaded", 503: "Unhealthy"}
Inputs = Text | Annotated[list[Text], Field(min_length=1)]


class TEIEmbedAllRequest(BaseModel):
    """POST /embed_all, as TEI takes it (and the fields /embed shares with it)."""

    model_config = STRICT

    inputs: Inputs = Field(description="a text or a list of texts (none empty)")
    truncate: bool | None = Field(False, description="false: an over-long input is a 422; true: cut it")
    truncation_direction: Literal["Right", "Left", "right", "left"] = Field(
        "Right", description="which end truncate keeps: Right keeps the start, Left the end")
    prompt_name: str | None = Field(None, description="an instruction by name: query or passage (GET /info)")


class TEIEmbedRequest(TEIEmbedAllRequest):
    """POST /embed, as TEI takes it."""

    normalize: bool = Field(True, description="only true: NV-Embed-v2's pooling normalises inside the engine")
    dimensions: int | None = Field(None, ge=1, description="only the model's own dimension")


class TEITokenizeRequest(BaseModel):
    model_config = STRICT

    inputs: Inputs
    add_special_tokens: bool = Field(True, description="true: BOS, the prompt and EOS as the model sees them")
    prompt_name: str | None = None


class TEIDecodeRequest(BaseModel):
    model_config = STRICT

    ids: Annotated[list[Annotated[int, Field(ge=0)]], Field(min_length=1)] | Annotated[
        list[Annotated[list[Annotated[int, Field(ge=0)]], Field(min_length=1)]], Field(min_length=1)]
    skip_special_tokens: bool = True


class TEIError(BaseModel):
    error: str
    error_type: str


class TEIEmbeddings(RootModel[list[list[float]]]):
    """One float row per input, in input order."""


class TEITokenStates(RootModel[list[list[list[float]]]]):
    """Per input (in input order), one float row per token the model saw: BOS, the prompt, the text, EOS."""


class TEIToken(BaseModel):
    id: int
    text: str
    special: bool
    start: int | None = Field(description="character offset in the tokenised string (prompt + text)")
    stop: int | None


class TEITokens(RootModel[list[list[TEIToken]]]):
    """The tokens of each input."""


class TEITexts(RootModel[list[str]]):
    """One text per row of ids."""


class TEIInfo(BaseModel):
    model_id: str
    model_sha: str | None
    model_dtype: str | None
    model_type: dict
    prompts: dict[str, str] = Field(description="prompt_name -> the instruction it prepends")
    max_concurrent_requests: int
    max_input_length: int
    max_batch_tokens: int
    max_batch_requests: int | None
    max_client_batch_size: int
    auto_truncate: bool
    tokenization_workers: int
    version: str
    token_states: bool = Field(description="POST /embed_all serves per-token states (a --pooling ensemble "
                                           "repository); false: it answers 424")
    max_embed_all_tokens: int = Field(description="tokens whose states one /embed_all request may return "
                                                  "(--max-embed-all-tokens)")
    sha: str | None = None
    docker_label: str | None = None


def tei_error(exc: APIError) -> tuple[int, dict]:
    """(status, TEI's error body) for one of our errors: a 400 is TEI's 422; TEI's field and option names."""
    status = 422 if exc.status == 400 else exc.status
    message = exc.message.replace(TRUNCATE_HINT, "truncate is false: send truncate true to embed it truncated, "
                                                 "truncation_direction Right keeping its start, Left its end")
    if exc.param == "input":   # our field's name in the service's messages is TEI's `inputs`
        message = re.sub(r"\binput(?=[\[ ])", "inputs", message)
    return status, {"error": message, "error_type": ERROR_TYPES.get(status, "Backend")}


def prompt(name: str | None) -> str:
    """The instruction `prompt_name` names (none: passages take no instruction)."""
    if name is None:
        return INPUT_TYPES["passage"]
    if name not in INPUT_TYPES:
        raise APIError(422, f"prompt_name {name!r} is not one of this model's prompts: {', '.join(INPUT_TYPES)}",
                       param="prompt_name")
    return INPUT_TYPES[name]


def prepared(service, request: TEIEmbedAllRequest, dimensions: int | None = None):
    """The service's checked job for a TEI embedding body (service.prepare: every limit as for /v1/embeddings)."""
    truncate = DIRECTIONS[request.truncation_direction.lower()] if request.truncate else "NONE"
    return service.prepare(EmbeddingRequest(input=request.inputs, model=service.model_id, dimensions=dimensions,
                                            instruction=prompt(request.prompt_name), truncate=truncate))


def parse_embed(service, body: bytes):
    """A TEI /embed body as the service's checked job."""
    request = parse_json(body, TEIEmbedRequest)
    if not request.normalize:
        raise APIError(422, "normalize false is not served: NV-Embed-v2's pooling L2-normalises inside the engine "
                            "(send normalize true or leave it out)", param="normalize")
    return prepared(service, request, request.dimensions)


def parse_embed_all(service, body: bytes):
    """A TEI /embed_all body as the service's checked job for token states; 424 where the engine pools in its
    graph (after the body is checked, as TEI: a malformed body is still a 422)."""
    request = parse_json(body, TEIEmbedAllRequest)
    if not service.serves_token_states:
        raise APIError(424, f"POST /embed_all is not served by this repository: its encoder pools inside the graph "
                            f"(pooling {service.spec.pooling!r}), so per-token states never leave the engine. A "
                            f"repository that serves them: nvembed-trt export --model MODEL --output "
                            f"export/NAME-ensemble --pooling ensemble (then precision and build as for any export), "
                            f"and nvembed-trt triton-repo --model MODEL --encoder <that export or its engine> "
                            f"--output triton_repo/NAME-ensemble", param="inputs")
    job = prepared(service, request)
    job.states = True
    return job


def check_size(service, count: int, size: int, field: str) -> None:
    """/tokenize's and /decode's limits: items per request (--max-inputs), characters or ids in all
    (--max-tokenize-chars); 413 beyond."""
    settings = service.settings
    if count > settings.max_inputs:
        raise APIError(413, f"{field} has {count} items, above the limit of {settings.max_inputs} per request "
                            f"(--max-inputs)", param=field)
    if size > settings.max_tokenize_chars:
        raise APIError(413, f"{field} holds {size} characters or ids, above the limit of "
                            f"{settings.max_tokenize_chars} per request (--max-tokenize-chars)", param=field)


def tokenize(service, body: bytes) -> list[list[dict]]:
    """TEI /tokenize: each input's tokens (with add_special_tokens: BOS + the prompt + the text + EOS, untruncated,
    as the model would see them before its token limit)."""
    request = parse_json(body, TEITokenizeRequest)
    texts = [request.inputs] if isinstance(request.inputs, str) else request.inputs
    check_size(service, len(texts), sum(map(len, texts)), "inputs")
    tok = service.tokenizer
    instruction = prompt(request.prompt_name)
    strings = [instruction + t + tok.special.eos for t in texts] if request.add_special_tokens else texts
    special = {tok.bos_id, tok.eos_id, tok.pad_id}
    out = []
    for encoding in tok.tokenizer.encode_batch(strings, add_special_tokens=False):
        tokens = [{"id": i, "text": t, "special": i in special, "start": a, "stop": b}
                  for i, t, (a, b) in zip(encoding.ids, encoding.tokens, encoding.offsets)]
        if request.add_special_tokens and tok.special.add_bos:
            tokens.insert(0, {"id": tok.bos_id, "text": tok.special.bos, "special": True, "start": None,
                              "stop": None})
        out.append(tokens)
    return out


def decode(service, body: bytes) -> list[str]:
    """TEI /decode: the text of each row of ids (ids outside the vocabulary: 422 naming the first)."""
    request = parse_json(body, TEIDecodeRequest)
    rows = [request.ids] if isinstance(request.ids[0], int) else request.ids
    check_size(service, len(rows), sum(map(len, rows)), "ids")
    vocab = service.tokenizer.vocab_size
    for i, row in enumerate(rows):
        if max(row) >= vocab:
            raise APIError(422, f"ids[{i}] holds token id {max(row)}, outside the vocabulary of {vocab} ids "
                                f"(0..{vocab - 1})", param="ids")
    return service.tokenizer.tokenizer.decode_batch(rows, skip_special_tokens=request.skip_special_tokens)


def info(service) -> dict:
    meta, settings = service.metadata(), service.settings
    return {"model_id": service.model_id, "model_sha": meta["model"]["fingerprint"], "model_dtype": meta["recipe"],
            "model_type": {"embedding": {"pooling": "latent-attention mean (NV-Embed-v2), L2-normalised"}},
            "prompts": dict(INPUT_TYPES), "max_concurrent_requests": settings.max_concurrent_requests,
            "max_input_length": service.spec.max_length, "max_batch_tokens": service.packer.max_batch_tokens,
            "max_batch_requests": None, "max_client_batch_size": settings.max_inputs, "auto_truncate": False,
            "tokenization_workers": TOKENIZE_WORKERS, "version": __version__,
            "token_states": service.serves_token_states, "max_embed_all_tokens": settings.max_embed_all_tokens}
