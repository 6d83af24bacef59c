# Two commands for a fresh machine: `make demo` (install + run the pipeline on embedded data) and
# `make test` (install + run the test suite). Both create the virtual environment .venv first.
PYTHON_BOOTSTRAP ?= python3
VENV ?= .venv
PYTHON := $(VENV)/bin/python
DEMO_DATA ?= data/demo

.PHONY: install test test-fast lint demo demo-quick demo-pipeline ablation ablation-pipeline \
	clean-demo

install: $(VENV)/.installed

$(VENV)/.installed: requirements.txt pyproject.toml Makefile
	$(PYTHON_BOOTSTRAP) -m venv $(VENV)
	$(PYTHON) -m pip install --quiet --upgrade pip
	$(PYTHON) -m pip install --quiet -r requirements.txt
	$(PYTHON) -m pip install --quiet --no-deps --editable .
	touch $@

test: install
	$(PYTHON) -m pytest

test-fast: install
	$(PYTHON) -m pytest -m "not slow"

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

# `make demo` runs the comparison over SEEDS (every stage trained once per seed, on the same data);
# `make demo-quick` over the first seed alone. Stages run DEMO_JOBS at a time, each on
# DEMO_THREADS threads: the runs of one seed that do not depend on each other (teacher and step 1,
# then the baseline and step 2) and the seeds themselves go side by side. The thread count is
# fixed, so a seed gives the same numbers whichever command runs it and however many run beside it.
SEEDS ?= 1 2 3
DEMO_JOBS ?= 2
DEMO_THREADS ?= 1

demo: install
	$(MAKE) demo-pipeline PYTHON=$(abspath $(PYTHON)) SEEDS="$(SEEDS)" \
		DEMO_COMMAND='make demo SEEDS="$(SEEDS)"'

demo-quick: install
	$(MAKE) demo-pipeline PYTHON=$(abspath $(PYTHON)) SEEDS="$(firstword $(SEEDS))" \
		DEMO_COMMAND='make demo-quick'

# `make ablation` measures the recipe's next steps on the same synthetic data and seeds: other
# architectures trained as the FT-UNetFormer student (step 1 + step 2), their ensemble,
# self-training on the unlabelled tiles the ensemble pseudo-labels (step 3), and step 2 with one
# lever against class imbalance or one mixing augmentation at a time. Its runs
# have their own folders (model_weights/ablation, lightning_logs/ablation, outputs/ablation).
ablation: install
	$(MAKE) ablation-pipeline PYTHON=$(abspath $(PYTHON)) SEEDS="$(SEEDS)" \
		DEMO_COMMAND='make ablation SEEDS="$(SEEDS)"'

# The whole pipeline on synthetic data. Paths and sizes can be overridden: the slow test runs it in
# a temporary folder, smaller (REPO is where the scripts are; the configs' paths are relative to
# the working directory). RUN_SET names the runs' folders under model_weights/ and lightning_logs/.
REPO := $(patsubst %/,%,$(dir $(abspath $(lastword $(MAKEFILE_LIST)))))
DEMO_CONFIGS ?= $(REPO)/config/demo
DEMO_DATA_ARGS ?=
DEMO_OUT ?= outputs/demo
DEMO_COMMAND ?= make $(MAKECMDGOALS)
RUN_SET ?= demo
DEMO_WEIGHTS = model_weights/$(RUN_SET)
TEST_SPLIT := $(DEMO_DATA)/biodiversity/Test
SINGLE_MODELS := teacher student_target_only student_pretrain_all student_ft_target_kd
# the ablation's step 2 students, one per family (FT-UNetFormer's is the demo's step 2)
FAMILIES := segformer upernet
ABLATION_MODELS := student_ft_target_kd $(foreach family,$(FAMILIES),$(family)_ft_target_kd)
# the ablation's step 2 levers (config/demo/step2_<lever>.py)
LEVERS := class_weighted lovasz rare_class_crops classmix
LEVER_MODELS := $(foreach lever,$(LEVERS),student_ft_target_kd_$(lever))
# the ablation's step 1 levers against a second domain that hurts (config/demo/step1_<lever>.py),
# each followed by step 2 as shipped; and step 2 from step 1's best checkpoint on the target's Val
STEP1_LEVERS := balanced matched partial
STEP1_LEVER_MODELS := $(foreach lever,$(STEP1_LEVERS),student_pretrain_$(lever))
DOMAIN_LEVER_MODELS := $(foreach lever,$(STEP1_LEVERS) best,student_ft_target_kd_from_$(lever))
# step 0 on the map data's weak labels, step 1 from it, step 2 from that
STEP0_MODELS := student_pretrain_map_labels student_pretrain_all_from_step0 \
	student_ft_target_kd_from_step0
# the partial remap: rangeland -> forest or grassland, bareland -> ignore
PARTIAL_REMAP := '255,255,1|2,4,4,1,5,3,4'
DEMO_VARS = PYTHON=$(PYTHON) DEMO_CONFIGS=$(DEMO_CONFIGS) DEMO_DATA=$(DEMO_DATA) \
	DEMO_OUT=$(DEMO_OUT) RUN_SET=$(RUN_SET)

# The target combined with the second domain into $(DEMO_DATA)/$(1), with the options $(2); the
# synthetic target's tiles are 1 m pixels (PNG, without georeference: --target-gsd says so).
combine = $(PYTHON) $(REPO)/create_combined_dataset.py --target-root $(DEMO_DATA)/biodiversity \
	--oem-root $(DEMO_DATA)/OpenEarthMap --output-root $(DEMO_DATA)/$(1) --target-gsd 1.0 \
	--workers 2 $(2)
# Fresh output, weights and log folders (a training stage refuses a weights folder holding an
# earlier run's checkpoints) and the synthetic data (target, a second domain in the OpenEarthMap
# layout that differs from it as real datasets do, their combination as shipped, and
# DEMO_MAP_SCENES georeferenced target scenes with an OpenStreetMap file in $(DEMO_DATA)/map_scenes:
# the input of learning from maps; a second or two).
DEMO_MAP_SCENES ?= 4
define prepare_demo_data
	rm -rf $(DEMO_OUT) $(DEMO_WEIGHTS) lightning_logs/$(RUN_SET)
	mkdir -p $(DEMO_OUT) && date +%s > $(DEMO_OUT)/.started_at
	$(PYTHON) -m geoseg.datasets.synthetic --output-root $(DEMO_DATA) \
		--map-scenes $(DEMO_MAP_SCENES) $(DEMO_DATA_ARGS)
	$(call combine,biodiversity_combined)
endef
# Step 0's weak labels: the map scenes' OpenStreetMap file rasterised onto them and cut into
# training tiles in $(DEMO_DATA)/map_labels (config/demo/step0_pretrain_map_labels.py reads them).
define map_labels
	rm -rf $(DEMO_DATA)/map_labels
	$(PYTHON) $(REPO)/map_labels.py --scenes $(DEMO_DATA)/map_scenes/images \
		--map-data $(DEMO_DATA)/map_scenes/map.osm --tags $(REPO)/config/map_tags.py \
		--output-root $(DEMO_DATA)/map_labels --tile-size 128
endef
# Make the targets $(1) (one per seed) DEMO_JOBS at a time.
define run_seeds
	OMP_NUM_THREADS=$(DEMO_THREADS) $(MAKE) -f $(REPO)/Makefile -j $(DEMO_JOBS) --output-sync \
		$(DEMO_VARS) $(1)
endef
REPORT_FACTS = --runs $(DEMO_OUT) --seeds $(SEEDS) --data-root $(DEMO_DATA)/biodiversity \
	--output $(DEMO_OUT) --command '$(DEMO_COMMAND)' --threads $(DEMO_THREADS) \
	--jobs $(DEMO_JOBS) --started-at $$(cat $(DEMO_OUT)/.started_at)

demo-pipeline:
	$(prepare_demo_data)
	$(call run_seeds,$(foreach seed,$(SEEDS),$(DEMO_OUT)/seed_$(seed)/scored))
	$(PYTHON) $(REPO)/evaluation/demo_report.py $(REPORT_FACTS) --logs lightning_logs/$(RUN_SET)

ablation-pipeline: DEMO_OUT = outputs/ablation
ablation-pipeline: RUN_SET = ablation
ablation-pipeline:
	$(prepare_demo_data)
	$(call combine,biodiversity_combined_matched,--oem-scale auto)
	$(call combine,biodiversity_combined_partial,--remap $(PARTIAL_REMAP))
	$(map_labels)
	$(call run_seeds,$(foreach seed,$(SEEDS),$(DEMO_OUT)/seed_$(seed)/ablation_scored))
	$(PYTHON) $(REPO)/evaluation/ablation_report.py $(REPORT_FACTS) \
		--pseudo-labels $(DEMO_DATA)/pseudo_labels \
		--preflight $(DEMO_DATA)/biodiversity_combined/preflight.json

# One seed's runs, as files that make orders: $(DEMO_OUT)/seed_<s>/<stage>.trained marks a finished
# training stage (weights in model_weights/$(RUN_SET)/seed_<s>/<stage>, TensorBoard logs in
# lightning_logs/$(RUN_SET)/seed_<s>/<stage>); .../scored marks every model predicted and scored
# into $(DEMO_OUT)/seed_<s>/predictions/<row>. The pipelines remove them first: every run is fresh.
# The stage's outputs for seed $*: $(call seed_run,<stage>)
.SECONDARY:
seed_run = --seed $* --set run_name=$(RUN_SET)/seed_$*/$(1)
teacher_of_seed = teacher_ckpt_path=$(DEMO_WEIGHTS)/seed_$*/teacher/last.ckpt

$(DEMO_OUT)/seed_%/teacher.trained:
	mkdir -p $(@D)
	$(PYTHON) $(REPO)/train_supervision.py -c $(DEMO_CONFIGS)/teacher.py $(call seed_run,teacher)
	touch $@

$(DEMO_OUT)/seed_%/student_target_only.trained: $(DEMO_OUT)/seed_%/teacher.trained
	$(PYTHON) $(REPO)/train_kd.py -c $(DEMO_CONFIGS)/student_target_only.py \
		$(call seed_run,student_target_only) $(teacher_of_seed)
	touch $@

$(DEMO_OUT)/seed_%/student_pretrain_all.trained:
	mkdir -p $(@D)
	$(PYTHON) $(REPO)/train_supervision.py -c $(DEMO_CONFIGS)/step1_pretrain_combined.py \
		$(call seed_run,student_pretrain_all)
	touch $@

# A step 2 run: $(1) trained with $(DEMO_CONFIGS)/$(2) from the step 1 run $(3) of the same seed
# (its checkpoint $(4), last.ckpt when not given), distilled from that seed's teacher.
define step2_run
$$(DEMO_OUT)/seed_%/$(1).trained: $$(DEMO_OUT)/seed_%/teacher.trained \
		$$(DEMO_OUT)/seed_%/$(3).trained
	$$(PYTHON) $$(REPO)/train_kd.py -c $$(DEMO_CONFIGS)/$(2) $$(call seed_run,$(1)) \
		$$(teacher_of_seed) pretrained_ckpt_path=$$(DEMO_WEIGHTS)/seed_$$*/$(3)/$(or $(4),last.ckpt)
	touch $$@
endef
$(eval $(call step2_run,student_ft_target_kd,step2_finetune_target_kd.py,student_pretrain_all))

# Every single model at scale 1 without flips, step 2 with TTA, and the recipe's ensemble:
# the ensemble of the baseline and step 2 with TTA; then all of them scored in one pass.
$(DEMO_OUT)/seed_%/scored: $(foreach model,$(SINGLE_MODELS),$(DEMO_OUT)/seed_%/$(model).trained)
	for model in $(SINGLE_MODELS); do \
		$(PYTHON) $(REPO)/ensemble_inference.py --input-dir $(TEST_SPLIT)/images_png \
			--output-dir $(@D)/predictions/$$model --scales 1.0 --flips none \
			--checkpoints $(DEMO_WEIGHTS)/seed_$*/$$model/last.ckpt || exit 1; \
	done
	$(PYTHON) $(REPO)/ensemble_inference.py --input-dir $(TEST_SPLIT)/images_png \
		--output-dir $(@D)/predictions/student_ft_target_kd_tta --scales 0.75,1.0,1.25 \
		--checkpoints $(DEMO_WEIGHTS)/seed_$*/student_ft_target_kd/last.ckpt
	$(PYTHON) $(REPO)/ensemble_inference.py --input-dir $(TEST_SPLIT)/images_png \
		--output-dir $(@D)/predictions/ensemble_tta --scales 0.75,1.0,1.25 --save-rgb \
		--checkpoint1 $(DEMO_WEIGHTS)/seed_$*/student_target_only/last.ckpt \
		--checkpoint2 $(DEMO_WEIGHTS)/seed_$*/student_ft_target_kd/last.ckpt
	$(PYTHON) $(REPO)/evaluation/model_metrics.py --gt-dir $(TEST_SPLIT)/masks_png --pred-dir \
		$(foreach row,$(SINGLE_MODELS) student_ft_target_kd_tta ensemble_tta,$(@D)/predictions/$(row)) \
		> /dev/null
	touch $@

# Step 1 and step 2 of another family $(1): $(DEMO_CONFIGS)/$(1)_step{1,2}_*.py, as the student's.
define family_runs
$$(DEMO_OUT)/seed_%/$(1)_pretrain_all.trained:
	mkdir -p $$(@D)
	$$(PYTHON) $$(REPO)/train_supervision.py -c $$(DEMO_CONFIGS)/$(1)_step1_pretrain_combined.py \
		$$(call seed_run,$(1)_pretrain_all)
	touch $$@

$(call step2_run,$(1)_ft_target_kd,$(1)_step2_finetune_target_kd.py,$(1)_pretrain_all)
endef
$(foreach family,$(FAMILIES),$(eval $(call family_runs,$(family))))

# The levers against class imbalance and the mixing augmentation: step 2 with one change each
# ($(DEMO_CONFIGS)/step2_<lever>.py), from the same step 1 and teacher.
$(foreach lever,$(LEVERS),$(eval $(call \
	step2_run,student_ft_target_kd_$(lever),step2_$(lever).py,student_pretrain_all)))

# The levers against a second domain that hurts: step 1 with one change each
# ($(DEMO_CONFIGS)/step1_<lever>.py), then step 2 as shipped from it; and step 2 as shipped from
# step 1's best checkpoint on the target's Val (<run>-best.ckpt) instead of its last.ckpt.
define step1_lever_runs
$$(DEMO_OUT)/seed_%/student_pretrain_$(1).trained:
	mkdir -p $$(@D)
	$$(PYTHON) $$(REPO)/train_supervision.py -c $$(DEMO_CONFIGS)/step1_$(1).py \
		$$(call seed_run,student_pretrain_$(1))
	touch $$@

$(call step2_run,student_ft_target_kd_from_$(1),step2_finetune_target_kd.py,student_pretrain_$(1))
endef
$(foreach lever,$(STEP1_LEVERS),$(eval $(call step1_lever_runs,$(lever))))
$(eval $(call step2_run,student_ft_target_kd_from_best,step2_finetune_target_kd.py,student_pretrain_all,student_pretrain_all-best.ckpt))

# Step 0 (the student on the map data's weak labels), step 1 from it, and step 2 as shipped from
# that step 1.
$(DEMO_OUT)/seed_%/student_pretrain_map_labels.trained:
	mkdir -p $(@D)
	$(PYTHON) $(REPO)/train_supervision.py -c $(DEMO_CONFIGS)/step0_pretrain_map_labels.py \
		$(call seed_run,student_pretrain_map_labels)
	touch $@

$(DEMO_OUT)/seed_%/student_pretrain_all_from_step0.trained: \
		$(DEMO_OUT)/seed_%/student_pretrain_map_labels.trained
	$(PYTHON) $(REPO)/train_supervision.py -c $(DEMO_CONFIGS)/step1_from_step0.py \
		$(call seed_run,student_pretrain_all_from_step0) \
		pretrained_ckpt_path=$(DEMO_WEIGHTS)/seed_$*/student_pretrain_map_labels/last.ckpt
	touch $@
$(eval $(call step2_run,student_ft_target_kd_from_step0,step2_finetune_target_kd.py,student_pretrain_all_from_step0))

# Self-training: the families' ensemble (with TTA) labels the unlabelled tiles, then step 3
# trains the step 2 student on Train + those pseudo-labels (config/demo/step3_self_training.py
# reads data/demo/pseudo_labels/seed_<seed>).
$(DEMO_OUT)/seed_%/pseudo_labels.done: $(foreach model,$(ABLATION_MODELS),$(DEMO_OUT)/seed_%/$(model).trained)
	rm -rf $(DEMO_DATA)/pseudo_labels/seed_$*
	$(PYTHON) $(REPO)/pseudo_label.py --input-dir $(DEMO_DATA)/biodiversity/Unlabelled/images_png \
		--output-root $(DEMO_DATA)/pseudo_labels/seed_$* \
		--checkpoints $(foreach model,$(ABLATION_MODELS),$(DEMO_WEIGHTS)/seed_$*/$(model)/last.ckpt)
	touch $@

$(DEMO_OUT)/seed_%/student_self_training.trained: $(DEMO_OUT)/seed_%/pseudo_labels.done
	$(PYTHON) $(REPO)/train_kd.py -c $(DEMO_CONFIGS)/step3_self_training.py \
		$(call seed_run,student_self_training) $(teacher_of_seed) \
		pretrained_ckpt_path=$(DEMO_WEIGHTS)/seed_$*/student_ft_target_kd/last.ckpt
	touch $@

# The ablation's models at scale 1 without flips, the ensemble of the different families with
# equal weights, and with members and weights chosen on the target's Val.
SCORED_ALONE := $(ABLATION_MODELS) student_self_training $(LEVER_MODELS) student_pretrain_all \
	$(STEP1_LEVER_MODELS) $(DOMAIN_LEVER_MODELS) $(STEP0_MODELS)
ABLATION_ROWS := $(SCORED_ALONE) families_ensemble families_ensemble_selected
$(DEMO_OUT)/seed_%/ablation_scored: $(foreach model,$(SCORED_ALONE),$(DEMO_OUT)/seed_%/$(model).trained)
	for model in $(SCORED_ALONE); do \
		$(PYTHON) $(REPO)/ensemble_inference.py --input-dir $(TEST_SPLIT)/images_png \
			--output-dir $(@D)/predictions/$$model --scales 1.0 --flips none \
			--checkpoints $(DEMO_WEIGHTS)/seed_$*/$$model/last.ckpt || exit 1; \
	done
	$(PYTHON) $(REPO)/ensemble_inference.py --input-dir $(TEST_SPLIT)/images_png \
		--output-dir $(@D)/predictions/families_ensemble --scales 1.0 --flips none \
		--checkpoints $(foreach model,$(ABLATION_MODELS),$(DEMO_WEIGHTS)/seed_$*/$(model)/last.ckpt)
	$(PYTHON) $(REPO)/evaluation/select_ensemble.py --val-dir $(DEMO_DATA)/biodiversity/Val \
		--output $(@D)/ensemble_selection.json --scales 1.0 --flips none \
		--checkpoints $(foreach model,$(ABLATION_MODELS),$(DEMO_WEIGHTS)/seed_$*/$(model)/last.ckpt)
	$(PYTHON) $(REPO)/ensemble_inference.py --input-dir $(TEST_SPLIT)/images_png \
		--output-dir $(@D)/predictions/families_ensemble_selected --scales 1.0 --flips none \
		--selection $(@D)/ensemble_selection.json
	$(PYTHON) $(REPO)/evaluation/model_metrics.py --gt-dir $(TEST_SPLIT)/masks_png --pred-dir \
		$(foreach row,$(ABLATION_ROWS),$(@D)/predictions/$(row)) > /dev/null
	touch $@

clean-demo:
	rm -rf data/demo model_weights/demo lightning_logs/demo outputs/demo \
		model_weights/ablation lightning_logs/ablation outputs/ablation
