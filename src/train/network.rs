//! The network side of a run: the training plan, the evaluation plan and, when fine-tuning,
//! the frozen front that runs before each step.

use std::sync::Arc;

use super::trainer::{Finetune, TrainOptions};
use crate::gpu::Gpu;
use crate::graph::{ParamBuffers, ParamStore, Plan, TrainConfig, TrainPlan};
use crate::model::{Form, MobileNetV1Config, CLASSIFIER, STAGES};
use crate::ops::TrainSettings;
use crate::weights::{fold_batchnorm, Pretrained};

/// The frozen front of a fine-tuned network: folded, run before each step, never updated.
pub(crate) struct FrozenPart {
    pub plan: Plan,
    /// Its unfolded parameters, as checkpoints store them.
    pub params: ParamStore,
}

/// Everything on the GPU that a run trains and evaluates.
pub(crate) struct Network {
    pub train: TrainPlan,
    /// Runs the whole network; with a frozen part it has its own parameter buffers,
    /// refreshed from both parts before each evaluation.
    pub eval: Plan,
    pub frozen: Option<FrozenPart>,
    params: Arc<ParamBuffers>,
    trained_graph: crate::graph::GraphBuilder,
}

impl Network {
    /// Compiles the plans for `config` with initial weights seeded by `options.seed`, or
    /// taken from `pretrained` for everything but the classifier.
    pub fn build(
        gpu: &Gpu,
        options: &TrainOptions,
        config: &MobileNetV1Config,
        pretrained: Option<&Pretrained>,
    ) -> anyhow::Result<Network> {
        let batch = options.batch_size;
        let model = config.build(batch)?;
        let mut initial = ParamStore::initialize(&model.graph, options.seed);
        if let Some(p) = pretrained {
            for (name, shape, values) in p.params.iter() {
                if !name.starts_with(CLASSIFIER) {
                    initial.insert(name, shape.to_vec(), values.to_vec());
                }
            }
        }
        let first_trained = options
            .finetune
            .as_ref()
            .map_or(0, Finetune::first_trained_stage);
        let trained = config.build_stages(batch, first_trained..STAGES, Form::Train)?;
        let frozen = if first_trained > 0 {
            let part = config.build_stages(batch, 0..first_trained, Form::Folded)?;
            let unfolded = config.build_stages(1, 0..first_trained, Form::Train)?;
            let params = initial.for_graph(&unfolded.graph);
            let plan = part.graph.compile(gpu)?;
            plan.load_params(&fold_batchnorm(&params, config.bn_eps)?)?;
            Some(FrozenPart { plan, params })
        } else {
            None
        };
        let params = Arc::new(ParamBuffers::new(gpu, &trained.graph)?);
        params.load(&initial.for_graph(&trained.graph))?;
        let train = TrainPlan::compile(
            &trained.graph,
            gpu,
            params.clone(),
            &train_config(options, &trained.graph),
        )?;
        let eval = match &frozen {
            Some(_) => model.graph.compile(gpu)?,
            None => Plan::compile_with(&model.graph, gpu, params.clone())?,
        };
        Ok(Network {
            train,
            eval,
            frozen,
            params,
            trained_graph: trained.graph,
        })
    }

    /// Queues one training step on a batch.
    pub fn step(&self, images: &[f32], labels: &[u32], lr: f32) -> anyhow::Result<()> {
        // A frozen front runs in the same submit, its features staying on the GPU.
        match &self.frozen {
            Some(front) => self
                .train
                .step_queued_after(&front.plan, images, labels, lr)?,
            None => self.train.step_queued(images, labels, lr)?,
        }
        Ok(())
    }

    /// The whole network's parameters: the frozen part's and the trained part's.
    pub fn weights(&self) -> anyhow::Result<ParamStore> {
        let mut all = self
            .frozen
            .as_ref()
            .map(|f| f.params.clone())
            .unwrap_or_default();
        all.extend(&self.params.read()?);
        Ok(all)
    }

    /// Makes the evaluation plan see `weights` (needed only when it has its own buffers).
    pub fn prepare_eval(&self, weights: &ParamStore) -> anyhow::Result<()> {
        if self.frozen.is_some() {
            self.eval.load_params(weights)?;
        }
        Ok(())
    }

    /// Restores the trained part's weights and optimizer state from a checkpoint.
    pub fn restore(&self, params: &ParamStore, optimizer_state: &ParamStore) -> anyhow::Result<()> {
        self.params.load(&params.for_graph(&self.trained_graph))?;
        self.train.load_opt_state(optimizer_state)?;
        Ok(())
    }
}

fn train_config(options: &TrainOptions, graph: &crate::graph::GraphBuilder) -> TrainConfig {
    let weight_decay = graph
        .params()
        .iter()
        .map(|p| (p.name.clone(), options.optimizer.weight_decay_for(p)))
        .filter(|(_, d)| *d != 0.0)
        .collect();
    TrainConfig {
        settings: TrainSettings {
            bn_momentum: options.bn_momentum,
        },
        update: Some(options.optimizer.rule()),
        weight_decay,
        input_grad: false,
    }
}
