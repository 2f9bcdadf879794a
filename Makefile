# The documented interface: `make help` lists the targets.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH_VERSION ?= 2.13.0
MODEL ?= vgae
DATASET ?= cora
ARGS ?=

.DEFAULT_GOAL := help
.PHONY: help install run test test-fast mutations smoke clean

help:  ## list the targets
	@grep -E '^[a-zA-Z0-9_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

# torch is installed first from its pinned build, so that no dependency range pulls another one.
$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet torch==$(TORCH_VERSION)
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $@

install: $(BIN)/.installed  ## create .venv (torch first, then the toolkit with its test extras)

run: install  ## train MODEL (vgae) on DATASET (cora; sbm needs no files), extra Hydra overrides in ARGS
	$(BIN)/python -m vgae_toolkit model=$(MODEL) dataset=$(DATASET) $(ARGS)

test: install  ## the whole test suite (real-data tests run when VGAE_TOOLKIT_DATA is set)
	$(BIN)/python -m pytest -q

test-fast: install  ## the suite without the slow subprocess tests
	$(BIN)/python -m pytest -q -m "not slow"

mutations: install  ## break the protocol on purpose (tests/mutations.py) and check a test catches each breakage
	$(BIN)/python tests/mutations.py

smoke: install  ## a 20-epoch run on the synthetic graph
	$(BIN)/python -m vgae_toolkit dataset=sbm trainer.epochs=20

clean:  ## remove caches (keeps .venv and outputs/)
	rm -rf .pytest_cache build *.egg-info
	find . -name __pycache__ -prune -exec rm -rf {} +

# The VAE figures of Kingma & Welling (AEVB): Hydra sweeps of conf/experiment/figure*.yaml into
# VAE_RUNS, then one figure (and CSVs) into experiments/vae/. MNIST and Frey Face are read from
# VGAE_TOOLKIT_DATA. ARGS is passed to every run of the sweep.
VAE_RUNS ?= $(or $(VGAE_TOOLKIT_OUTPUT),outputs)/vae
VAE_FIGURES ?= experiments/vae
.PHONY: figure2 figure4 figure5

figure2: install  ## AEVB Fig. 2: bound vs samples, MNIST to 1e7 (~80 min) and Frey Face to 1e8 (~4-6 h, resumable)
	$(BIN)/python -m vgae_toolkit -m +experiment=figure2_mnist hydra.sweep.dir=$(VAE_RUNS)/figure2_mnist $(ARGS)
	$(BIN)/python -m vgae_toolkit -m +experiment=figure2_freyface hydra.sweep.dir=$(VAE_RUNS)/figure2_freyface $(ARGS)
	$(BIN)/python -m vgae_toolkit.plots.vae figure2 $(VAE_RUNS)/figure2_mnist $(VAE_RUNS)/figure2_freyface --out $(VAE_FIGURES)

figure4: install  ## AEVB Fig. 4: learned 2-D manifolds of Frey Face and MNIST (~7 min)
	$(BIN)/python -m vgae_toolkit -m +experiment=figure4 hydra.sweep.dir=$(VAE_RUNS)/figure4 $(ARGS)
	$(BIN)/python -m vgae_toolkit.plots.vae figure4 $(VAE_RUNS)/figure4 --out $(VAE_FIGURES)

figure5: install  ## AEVB Fig. 5: random MNIST samples for latent sizes 2, 5, 10, 20 (~15 min)
	$(BIN)/python -m vgae_toolkit -m +experiment=figure5 hydra.sweep.dir=$(VAE_RUNS)/figure5 $(ARGS)
	$(BIN)/python -m vgae_toolkit.plots.vae figure5 $(VAE_RUNS)/figure5 --out $(VAE_FIGURES)

# Table 1 of Burda et al. (IWAE), MNIST, one stochastic layer (conf/experiment/iwae_burda.yaml): the VAE and the
# IWAE with k = 5 and 50, one after another on one thread, each with test log p(x) at K = 5000; finished runs
# are skipped, so an interrupted run resumes. Not for CI: the k = 50 training is most of the time.
.PHONY: binarized-mnist
binarized-mnist: install  ## IWAE Table 1 (VAE, IWAE k=5, 50) on dynamic binarised MNIST (~56 min, 1 core)
	OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 $(BIN)/python -m vgae_toolkit -m +experiment=iwae_burda \
		hydra.sweep.dir=$(VAE_RUNS)/binarized_mnist $(ARGS)
	$(BIN)/python experiments/vae/binarized_mnist.py $(VAE_RUNS)/binarized_mnist --out $(VAE_FIGURES)/binarized_mnist.csv

# Table 1 of Kipf & Welling (VGAE): conf/experiment/table1.yaml sweeps SC, DW, GAE*, VGAE*, GAE and VGAE
# over Cora, CiteSeer and PubMed, seeds 0-9 (180 runs), TABLE1_JOBS at a time with one thread each, into
# TABLE1_RUNS; finished runs are skipped, so an interrupted `make table1` resumes. The report (markdown,
# CSV, LaTeX) goes to TABLE1_OUT.{md,csv,tex}, headed by the command, date, machine and wall time.
# Planetoid files are read from VGAE_TOOLKIT_DATA. ARGS is passed to every run of the sweep.
TABLE1_RUNS ?= $(or $(VGAE_TOOLKIT_OUTPUT),outputs)/table1
TABLE1_OUT ?= experiments/table1/results
TABLE1_SMOKE ?= $(or $(VGAE_TOOLKIT_OUTPUT),outputs)/table1_smoke
TABLE1_JOBS ?= 2
TABLE1_SWEEP = OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 $(BIN)/python -m vgae_toolkit -m launcher=joblib \
	hydra.launcher.n_jobs=$(TABLE1_JOBS)
TABLE1_REPORT = $(BIN)/python -m vgae_toolkit.report --paper experiments/table1/paper.csv
TABLE1_TITLE = Table 1 (Kipf & Welling 2016, link prediction)
.PHONY: table1 table1-tuned table1-smoke figures-graph

# $(1): experiment, $(2): runs folder, $(3): report path; $(4): report command (default: Table 1's),
# $(5): title. Runs the sweep, then writes the report with a header saying how it was made.
define table1_sweep
	@start=$$(date +%s); load=$$(cut -d' ' -f1-3 /proc/loadavg); \
	$(TABLE1_SWEEP) +experiment=$(1) hydra.sweep.dir=$(2) $(ARGS) || exit 1; \
	wall=$$(( $$(date +%s) - start )); \
	$(or $(4),$(TABLE1_REPORT)) $(2) --out $(3) || exit 1; \
	{ echo "# $(or $(5),$(TABLE1_TITLE)): experiment=$(1)"; echo; \
	  echo "- command: \`make $@$(if $(ARGS), ARGS='$(ARGS)')\`, i.e. \`python -m vgae_toolkit -m +experiment=$(1) launcher=joblib hydra.launcher.n_jobs=$(TABLE1_JOBS)\` with OMP_NUM_THREADS=1"; \
	  echo "- date: $$(date -u '+%Y-%m-%d %H:%M UTC')"; \
	  echo "- machine: $$(nproc) cores ($$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')), $$(uname -sm), load average $$load at the start"; \
	  echo "- wall time: $$((wall / 60)) min $$((wall % 60)) s for the runs this invocation made (finished runs are skipped)"; \
	  cat $(3).md; } > $(3).md.tmp && mv $(3).md.tmp $(3).md && echo "wrote $(3).md"
endef

table1: install  ## VGAE Table 1, paper protocol: 180 runs (~30 min on 2 cores), then experiments/table1/results.md
	$(call table1_sweep,table1,$(TABLE1_RUNS),$(TABLE1_OUT))

table1-tuned: install  ## VGAE Table 1, GAE/VGAE rows with the validation-tuned preset (experiment=table1_tuned)
	$(call table1_sweep,table1_tuned,$(TABLE1_RUNS)_tuned,$(TABLE1_OUT)_tuned)

table1-smoke: install  ## Table 1 in about a minute: Cora, seed 0, every row, 20 epochs (what CI runs)
	$(TABLE1_SWEEP) +experiment=table1 dataset=cora seed=0 autoencoder.epochs=20 \
		hydra.sweep.dir=$(TABLE1_SMOKE) $(ARGS)
	$(TABLE1_REPORT) $(TABLE1_SMOKE) --out $(TABLE1_SMOKE)/results

# The graph auto-encoder family under our protocol (conf/experiment/zoo.yaml): 14 rows x Cora, CiteSeer, PubMed x
# seeds 0-9 into ZOO_RUNS (resumable, TABLE1_JOBS at a time), then experiments/zoo/results.{md,csv,tex} beside the
# published numbers (experiments/zoo/published.csv, each under its own protocol); the same runs' Hits@K, MRR, node
# clustering and linear-probe scores go to experiments/zoo/results_beyond_links.{md,csv,tex}.
ZOO_RUNS ?= $(or $(VGAE_TOOLKIT_OUTPUT),outputs)/zoo
ZOO_OUT ?= experiments/zoo/results
ZOO_REPORT = $(BIN)/python -m vgae_toolkit.report --paper experiments/zoo/published.csv
.PHONY: zoo
zoo: install  ## graph auto-encoders from SC to MaskGAE, one protocol: experiments/zoo/results.md
	$(call table1_sweep,zoo,$(ZOO_RUNS),$(ZOO_OUT),$(ZOO_REPORT),The graph auto-encoder zoo (link prediction, our protocol))
	$(BIN)/python -m vgae_toolkit.report $(ZOO_RUNS) --out $(ZOO_OUT)_beyond_links \
		--metrics hits_at_20,hits_at_50,hits_at_100,mrr,cluster_acc,cluster_nmi,cluster_ari,probe_acc

figures-graph: install  ## VGAE Fig. 1 (t-SNE of latent means, Cora) and ROC/PR curves, from seed 0 of make table1
	$(BIN)/python -m vgae_toolkit.plots.graph $(TABLE1_RUNS) --seed 0 --out experiments/table1

# Speed and memory against the reference loops (PyG's autoencoder example, pytorch/examples' VAE), measured
# side by side in one run; writes experiments/bench/results.md (+ .json) with the machine description.
# BENCH_ARGS picks sections or sizes, e.g. BENCH_ARGS="--sections link --link-datasets cora".
BENCH_ARGS ?=
.PHONY: bench
bench: install  ## benchmark against the reference loops (9-17 min by machine): experiments/bench/results.md
	$(BIN)/python benchmarks/bench.py $(BENCH_ARGS)  # data from VGAE_TOOLKIT_DATA (default: data)

# AE vs VAE latent spaces (conf/experiment/vae_latent_scatter.yaml): model=ae and model=vae with a 2-D latent on
# MNIST (trainer=image), then the test images' codes side by side, coloured by label. Measured: 7.6 min in all with
# one thread per run on 2 shared cores (AE 170 s, VAE 239 s, the plot rebuilds both models from their checkpoints).
.PHONY: latent-scatter
latent-scatter: install  ## AE vs VAE 2-D MNIST latents by label, experiments/vae/latent_scatter_ae_vs_vae.png (~8 min)
	$(BIN)/python -m vgae_toolkit -m +experiment=vae_latent_scatter hydra.sweep.dir=$(VAE_RUNS)/latent_scatter $(ARGS)
	$(BIN)/python -m vgae_toolkit.plots.vae latent-scatter $(VAE_RUNS)/latent_scatter --out $(VAE_FIGURES)

# Posterior collapse, shown (conf/experiment/collapse.yaml): a VAE with a PixelCNN decoder on binarised MNIST,
# trained with no remedy, KL warm-up, free bits, beta < 1 and cyclical annealing (one run each into
# COLLAPSE_RUNS, one thread; finished runs are skipped), then experiments/collapse/results.csv and
# kl_per_epoch.png. ARGS is passed to every run.
COLLAPSE_RUNS ?= $(or $(VGAE_TOOLKIT_OUTPUT),outputs)/collapse
.PHONY: collapse
collapse: install  ## posterior collapse and four remedies, experiments/collapse/ (~40 min on one core)
	OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 $(BIN)/python experiments/collapse/collapse.py --runs $(COLLAPSE_RUNS) \
		--out experiments/collapse $(ARGS)
