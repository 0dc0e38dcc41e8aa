"""The toy scenario's one step: count the words of a text file (as a module in tasks/ would)."""

from __future__ import annotations

from pydantic import BaseModel

from mmflow.tasks.caching import Step
from mmflow.tasks.errors import Rejection, RejectionCode
from mmflow.tasks.inputs import read_input


class WordCount(BaseModel):
    uri: str
    sha256: str
    words: int
    longest: str


def count_words(sha256: str, *, uri: str, lowercase: bool) -> WordCount:
    data = read_input(uri)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise Rejection(RejectionCode.UNSUPPORTED_FORMAT, f"{uri} is not UTF-8 text") from error
    words = (text.lower() if lowercase else text).split()
    return WordCount(
        uri=uri, sha256=sha256, words=len(words), longest=max(words, key=len, default="")
    )


COUNT = Step("count", count_words, lambda params: "python str.split")
