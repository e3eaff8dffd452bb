"""``make_client`` specs, and the loopback server's conventions end to end."""

import asyncio
import json
import math

import httpx
import pytest
from google.oauth2.credentials import Credentials

from gecko_jax.fret.llm import make_client
from gecko_jax.fret.llm.loopback import LoopbackServer, find_field, generation_answer, main
from gecko_jax.fret.llm.openai_compatible import OpenAICompatibleClient
from gecko_jax.fret.llm.vertex import VertexClient


def test_openai_spec_and_dict_spec_with_overrides():
    with LoopbackServer(model="org/model-7b") as server:

        async def main_():
            async with make_client(
                f"openai:{server.base_url}#org/model-7b", max_concurrency=4
            ) as c:
                assert isinstance(c, OpenAICompatibleClient)
                assert (c.model_id, c.base_url, c.runner.max_concurrency) == (
                    "org/model-7b",
                    server.base_url,
                    4,
                )
                return (await c.generate("Passage: Owls hunt at night.")).text

        assert json.loads(asyncio.run(main_()))["query"] == "night owls hunt?"
    client = make_client(
        {"kind": "openai", "base_url": "http://127.0.0.1:9/v1", "model": "m"},
        model="n",
        timeout_s=3.0,
    )
    assert (client.model_id, client.runner.timeout_s) == ("n", 3.0)
    asyncio.run(client.aclose())


def test_vertex_spec():
    client = make_client(
        "vertex:gemini-2.5-flash",
        project="p",
        location="us-east5",
        credentials=Credentials(token="t"),
        base_url="http://127.0.0.1:9",
    )
    assert isinstance(client, VertexClient)
    assert (client.model_id, client.session.project, client.session.location) == (
        "gemini-2.5-flash",
        "p",
        "us-east5",
    )
    asyncio.run(client.aclose())


@pytest.mark.parametrize(
    "spec, message",
    [
        ("openai:http://host/v1", "openai:<base_url>#<model>"),
        ("vertex:", "vertex:<model>"),
        ("vertex-batch:", "vertex-batch:<model>"),
        ("loopback:fast", "loopback:<latency_s>"),
        ("gpt4", "the forms are"),
        ({"kind": "bedrock"}, "unknown kind 'bedrock'"),
    ],
)
def test_bad_specs_name_the_accepted_forms(spec, message):
    with pytest.raises(ValueError, match=message):
        make_client(spec)


def test_loopback_spec_starts_and_stops_its_own_server(tmp_path):
    async def main_():
        client = make_client("loopback:0.01", cache=tmp_path / "c.sqlite", rc_labels=("yes", "no"))
        server = client.server
        assert server.latency_s == 0.01 and server.rc_labels == ("yes", "no")
        async with client:
            generation = await client.generate(
                "Passage: Bees make honey.\nTask type: question answering", json_mode=True
            )
            labels = await client.label_probabilities(
                "Query: bees\nPassage: Bees make honey.", ["yes", "no"]
            )
            assert (
                await client.generate(
                    "Passage: Bees make honey.\nTask type: question answering", json_mode=True
                )
            ).cached
        return server, generation, labels

    server, generation, labels = asyncio.run(main_())
    assert json.loads(generation.text) == {
        "task": "Given a question, retrieve passages that answer the question",
        "query": "honey bees make?",
    }
    assert labels == pytest.approx({"yes": 1 / (1 + math.exp(-2.0)), "no": 1 / (1 + math.exp(2.0))})
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{server.base_url}/models")


def test_loopback_fields_follow_the_prompt_conventions():
    prompt = (
        "Example passage: not this one\nPassage: first line\ncontinues here\n"
        "Task type: fact checking\nOutput:"
    )
    assert find_field(prompt, "Passage") == "first line continues here"
    assert find_field(prompt, "Task type") == "fact checking"
    assert find_field("Passage: a\n\nb", "Passage") == "a"
    assert find_field("Passage: a\nOutput: b", "Passage") == "a"
    assert find_field("no fields", "Passage") is None
    assert generation_answer("no passage here").startswith("loopback: no 'Passage:'")
    # Never a copy: these content words would run in passage order, so they are reversed.
    assert json.loads(generation_answer("Passage: Photosynthesis transforms sunlight"))[
        "query"
    ] == ("sunlight transforms photosynthesis?")


def test_loopback_lists_its_model_and_answers_404_for_others():
    with LoopbackServer(model="m1") as server:
        assert httpx.get(f"{server.base_url}/models").json()["data"][0]["id"] == "m1"
        missing = httpx.post(
            f"{server.base_url}/chat/completions", json={"model": "m2", "messages": []}
        )
        assert (
            missing.status_code == 404
            and "`m2` does not exist" in missing.json()["error"]["message"]
        )
        assert httpx.get(f"{server.url}/nowhere").status_code == 404


def test_loopback_main_rejects_labels_sharing_a_first_word():
    with pytest.raises(ValueError, match="first word"):
        main(["--port", "0", "--rc_labels", "Very good,Very bad"])
