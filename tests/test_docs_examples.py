"""README.md and docs/*.md agree with the code: every example in them is checked (doc_examples.py)."""

import pytest
import tomllib
import yaml
from doc_examples import (
    ROOT,
    check_bench_command,
    check_python,
    cli_options,
    doc_files,
    env_names,
    fenced_blocks,
    inline_commands,
    is_matrix,
    shell_commands,
)

BLOCKS = [b for path in doc_files() for b in fenced_blocks(path)]


@pytest.fixture(scope="module")
def options():
    return cli_options()


def test_the_docs_have_examples_of_every_kind():
    langs = {b.lang for b in BLOCKS}
    assert {"yaml", "bash", "toml", "python"} <= langs, langs
    assert sum(is_matrix(yaml.safe_load(b.text)) for b in BLOCKS if b.lang == "yaml") >= 1


@pytest.mark.parametrize("block", [b for b in BLOCKS if b.lang in ("yaml", "yml")], ids=lambda b: b.where)
def test_yaml_examples_parse_and_matrices_validate(block, monkeypatch, tmp_path):
    from bench.config import parse_matrix, validate_names

    data = yaml.safe_load(block.text)
    if not is_matrix(data):
        return
    for var in env_names(block.text):  # the example's ${VARS}, as a user would set them
        monkeypatch.setenv(var, str(tmp_path / var))
    cfg = parse_matrix(data, tmp_path / "example.yaml")
    validate_names(cfg)  # registry names, presets and dataset options


@pytest.mark.parametrize("block", [b for b in BLOCKS if b.lang == "toml"], ids=lambda b: b.where)
def test_toml_examples_parse(block):
    tomllib.loads(block.text)


@pytest.mark.parametrize("block", [b for b in BLOCKS if b.lang == "python"], ids=lambda b: b.where)
def test_python_examples_compile_and_their_imports_exist(block):
    assert check_python(block) is None, check_python(block)


def test_every_bench_command_in_the_docs_exists_with_its_options(options):
    commands = [(b.where, c) for b in BLOCKS if b.lang not in ("yaml", "yml", "toml", "python")
                for c in shell_commands(b.text)]
    commands += [(f"{p.relative_to(ROOT)}:{line}", c) for p in doc_files() for line, c in inline_commands(p)]
    checked = [(where, c) for where, c in commands if "bench" in c]
    assert len(checked) > 15  # README's table, its setup and cluster blocks, the docs' examples
    problems = [f"{where}: {problem}" for where, c in checked if (problem := check_bench_command(c, options))]
    assert not problems, "\n".join(problems)


def test_the_checks_catch_what_they_are_for(options, tmp_path):
    """A nonexistent option, sub-command, dataset option or import is reported."""
    from bench.config import parse_matrix, validate_names
    from bench.errors import UserError

    doc = tmp_path / "x.md"
    doc.write_text("Run `bench run --matrix demo --frobnicate` or\n\n```bash\nbench frob --out x\n"
                   "torchrun --nproc_per_node 2 -m bench.cli run --no-such-flag\n```\n")
    (block,) = fenced_blocks(doc)
    problems = [check_bench_command(c, options) for c in shell_commands(block.text)]
    problems += [check_bench_command(c, options) for _, c in inline_commands(doc)]
    assert "no sub-command 'frob'" in problems[0]
    assert "has no option --no-such-flag" in problems[1]
    assert "has no option --frobnicate" in problems[2]
    assert check_bench_command("bench run --matrix celebdf --no-explain -q", options) is None
    assert "unknown option 'frames_per_video' for dataset 'ffpp'" in check_bench_command(
        "bench train-detector --detector xception --dataset ffpp --opt frames_per_video=1 --out x.safetensors",
        options)

    matrix = yaml.safe_load("dataset: {name: celebdf, root: /x, frames_per_video: 8}\n"
                            "detectors: {xception: {}}\nattacks: {pgd: {preset: paper-celebdf}}\n")
    with pytest.raises(UserError, match="unknown option 'frames_per_video' for dataset 'celebdf'"):
        validate_names(parse_matrix(matrix, tmp_path / "m.yaml"))
    doc.write_text("```python\nfrom bench.registry import create_detectr\n```\n")
    assert "has no create_detectr" in check_python(fenced_blocks(doc)[0])


def test_help_of_every_sub_command_the_docs_use(options):
    from typer.testing import CliRunner

    from bench.cli import app

    for sub in sorted(filter(None, options)):
        result = CliRunner().invoke(app, [sub, "--help"])
        assert result.exit_code == 0, (sub, result.output)
