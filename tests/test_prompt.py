"""From messages to prompt text and back, without a model: a chat template as a GGUF carries
it, the plain transcript for a base model, and the stop strings held back while text streams."""

from __future__ import annotations

import pytest

from assistant.engine.base import ChatMessage
from assistant.engine.prompt import PromptFormat, RenderedPrompt, StopScanner
from assistant.errors import ModelFileError

CHATML = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
STRICT = (
    "{% for m in messages %}{% if (m['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant') }}{% endif %}"
    "[{{ m['role'] }}] {{ m['content'] }}\n{% endfor %}"
)
QUESTION = [ChatMessage("system", "Be brief."), ChatMessage("user", "Hi there")]


def chatml() -> PromptFormat:
    return PromptFormat(CHATML, bos_token="<s>", eos_token="<|im_end|>")


def test_a_template_renders_the_chat_and_asks_for_an_answer() -> None:
    rendered = chatml().render(QUESTION)
    assert rendered == RenderedPrompt(
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi there<|im_end|>\n"
        "<|im_start|>assistant\n",
        ("<|im_end|>",),
        True,
    )
    assert not chatml().uses_fallback


def test_an_answer_to_continue_ends_the_prompt_right_after_its_last_word() -> None:
    messages = [*QUESTION, ChatMessage("assistant", "Hello, how")]
    assert chatml().render(messages) == RenderedPrompt(
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi there<|im_end|>\n"
        "<|im_start|>assistant\nHello, how",
        ("<|im_end|>",),
        True,
    )


def test_an_answer_the_template_shows_twice_is_continued_at_its_place_in_the_turns() -> None:
    recap = CHATML + "(last: {{ messages[-1]['content'] }})"
    format_ = PromptFormat(recap, bos_token="", eos_token="<|im_end|>")
    messages = [ChatMessage("user", "Hi"), ChatMessage("assistant", "Hello")]
    assert format_.render(messages).text == (
        "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello"
    )


def test_an_empty_answer_the_template_starts_with_is_continued_from_nothing() -> None:
    bare = "{% for m in messages %}{{ m['content'] }}<|end|>{% endfor %}"
    format_ = PromptFormat(bare, bos_token="", eos_token="<|end|>")
    assert format_.render([ChatMessage("assistant", "")]).text == ""  # not "<|end|>"


def test_the_template_gets_the_models_begin_and_end_tokens() -> None:
    framed = "{{ bos_token }}{% for m in messages %}{{ m['content'] }}{{ eos_token }}{% endfor %}"
    format_ = PromptFormat(framed, bos_token="<s>", eos_token="</s>")
    rendered = format_.render([ChatMessage("user", "Hi")])
    assert rendered == RenderedPrompt("<s>Hi</s>", ("</s>",), True)


def test_a_model_without_an_end_token_has_no_empty_stop_string() -> None:
    format_ = PromptFormat(CHATML, bos_token="", eos_token="")
    assert format_.render(QUESTION).stop == ()


def test_a_template_that_drops_the_answer_is_rendered_whole() -> None:
    quiet = (
        "{% for m in messages %}{% if m['role'] != 'assistant' %}{{ m['content'] }}|"
        "{% endif %}{% endfor %}"
    )
    format_ = PromptFormat(quiet, bos_token="", eos_token="</s>")
    messages = [*QUESTION, ChatMessage("assistant", "Hello")]
    assert format_.render(messages).text == "Be brief.|Hi there|"


def test_a_broken_template_is_named_when_the_model_loads() -> None:
    with pytest.raises(ModelFileError) as caught:
        PromptFormat("{% for m in messages %}", bos_token="", eos_token="")
    assert caught.value.message.startswith("The model's chat template is broken (")
    assert caught.value.hint == "Pick another file of this model."


def test_a_conversation_the_template_refuses_is_named() -> None:
    format_ = PromptFormat(STRICT, bos_token="", eos_token="")
    assert format_.render([ChatMessage("user", "a")]).text == "[user] a\n"
    with pytest.raises(ModelFileError) as caught:
        format_.render([ChatMessage("user", "a"), ChatMessage("user", "b")])
    assert caught.value.message == (
        "The model's chat template rejected this conversation (Conversation roles must "
        "alternate user/assistant)."
    )
    assert caught.value.hint == (
        "Some models need turns to alternate user/assistant; start a new chat."
    )


@pytest.mark.parametrize("template", [None, "", "  \n "])
def test_no_template_is_the_plain_transcript(template: str | None) -> None:
    format_ = PromptFormat(template, bos_token="<s>", eos_token="</s>")
    assert format_.uses_fallback
    messages = [*QUESTION, ChatMessage("assistant", " Hello! "), ChatMessage("user", " More ")]
    assert format_.render(messages) == RenderedPrompt(
        "System: Be brief.\n\nUser: Hi there\n\nAssistant: Hello!\n\nUser: More\n\nAssistant:",
        ("\nUser:", "\nSystem:", "\n\nUser:"),
        False,
    )


def test_the_plain_transcript_continues_an_answer_where_it_stopped() -> None:
    format_ = PromptFormat(None, bos_token="", eos_token="")
    rendered = format_.render([ChatMessage("user", "Hi"), ChatMessage("assistant", "  Hello, ")])
    assert rendered.text == "User: Hi\n\nAssistant: Hello, "
    longer = format_.render([*QUESTION, ChatMessage("assistant", "  Hello, ")])
    assert longer.text == "System: Be brief.\n\nUser: Hi there\n\nAssistant: Hello, "


def test_stop_strings_are_held_back_until_they_are_ruled_out() -> None:
    scanner = StopScanner(("<|im_end|>", "", "\nUser:"))
    assert scanner.feed("Paris is") == "Paris is"
    assert scanner.feed(" the capital<|im") == " the capital"  # may be a stop: held
    assert scanner.feed("age") == "<|image"  # it was not
    assert scanner.feed(".\nUs") == "."
    assert scanner.feed("er: next") == ""
    assert scanner.stopped
    assert scanner.feed("more") == "" and scanner.flush() == ""


def test_the_earliest_stop_wins_and_the_rest_is_dropped() -> None:
    scanner = StopScanner(("END", "\nUser:"))
    assert scanner.stopped is False
    assert scanner.feed("one\nUser: two END three") == "one"
    assert scanner.stopped is True


def test_a_stop_string_that_comes_twice_stops_at_the_first() -> None:
    scanner = StopScanner(("END",))
    assert scanner.feed("one END two END three") == "one "


def test_what_is_held_back_comes_out_at_the_end() -> None:
    scanner = StopScanner(("<|im_end|>",))
    assert scanner.feed("done <|im") == "done "
    assert scanner.flush() == "<|im"
    assert scanner.flush() == ""
    assert not scanner.stopped
