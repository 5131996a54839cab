//! The network side of a run: the training plan, the evaluation plan and, when fine-tuning,
//! the frozen front that runs before each step.

use std::sync::Arc;

use super::options::{Finetune, TrainOptions};
use crate::gpu::Gpu;
use crate::graph::{
    GraphBuilder, ParamBuffers, ParamStore, Plan, Replicas, StepTiming, TrainConfig, TrainPlan,
};
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
    /// Runs the whole network with batch norm folded into the convolutions (running
    /// statistics), as inference does: its own parameter buffers, refreshed with the
    /// folded weights before each evaluation.
    pub eval: Plan,
    bn_eps: f32,
    pub frozen: Option<FrozenPart>,
    params: Arc<ParamBuffers>,
    trained_graph: crate::graph::GraphBuilder,
    /// Whether steps exchange gradients with other replicas.
    replicated: bool,
}

/// The starting weights: seeded, with a pretrained network's in place of all but the
/// classifier's.
fn initial_params(graph: &GraphBuilder, seed: u64, pretrained: Option<&Pretrained>) -> ParamStore {
    let mut initial = ParamStore::initialize(graph, seed);
    if let Some(p) = pretrained {
        for (name, shape, values) in p.params.iter() {
            if !name.starts_with(CLASSIFIER) {
                initial.insert(name, shape.to_vec(), values.to_vec());
            }
        }
    }
    initial
}

impl FrozenPart {
    /// The frozen stages `0..first_trained` as a folded inference plan with their weights
    /// from `initial`; none when every stage trains.
    fn build(
        gpu: &Gpu,
        config: &MobileNetV1Config,
        batch: usize,
        first_trained: usize,
        initial: &ParamStore,
    ) -> anyhow::Result<Option<FrozenPart>> {
        if first_trained == 0 {
            return Ok(None);
        }
        let part = config.build_stages(batch, 0..first_trained, Form::Folded)?;
        let unfolded = config.build_stages(1, 0..first_trained, Form::Train)?;
        let params = initial.for_graph(&unfolded.graph);
        let plan = part.graph.compile(gpu)?;
        plan.load_params(&fold_batchnorm(&params, config.bn_eps)?)?;
        Ok(Some(FrozenPart { plan, params }))
    }
}

impl Network {
    /// Compiles the plans for `config` with initial weights seeded by `options.seed`, or
    /// taken from `pretrained` for everything but the classifier. With more than one
    /// replica the training plan exchanges gradients (and, with `sync_bn`, batch
    /// statistics) with the others.
    pub fn build(
        gpu: &Gpu,
        options: &TrainOptions,
        config: &MobileNetV1Config,
        pretrained: Option<&Pretrained>,
        replicas: usize,
    ) -> anyhow::Result<Network> {
        let batch = options.batch_size;
        let model = config.build(batch)?;
        let initial = initial_params(&model.graph, options.seed, pretrained);
        let first_trained = options
            .finetune
            .as_ref()
            .map_or(0, Finetune::first_trained_stage);
        let trained = config.build_stages(batch, first_trained..STAGES, Form::Train)?;
        let frozen = FrozenPart::build(gpu, config, batch, first_trained, &initial)?;
        let params = Arc::new(ParamBuffers::new(gpu, &trained.graph)?);
        params.load(&initial.for_graph(&trained.graph))?;
        let train = TrainPlan::compile(
            &trained.graph,
            gpu,
            params.clone(),
            &train_config(options, &trained.graph, replicas),
        )?;
        // The folded form runs a batch in a fraction of the passes: the per-epoch
        // evaluations of the default job took about a tenth of each epoch unfolded.
        let eval = config.build_folded(batch)?.graph.compile(gpu)?;
        Ok(Network {
            train,
            eval,
            bn_eps: config.bn_eps,
            frozen,
            params,
            trained_graph: trained.graph,
            replicated: replicas > 1,
        })
    }

    /// Queues one training step on a batch; a replicated step returns where its time went.
    pub fn step(
        &self,
        images: &[f32],
        labels: &[u32],
        lr: f32,
        replicas: &dyn Replicas,
    ) -> anyhow::Result<Option<StepTiming>> {
        // A frozen front runs in the same submit, its features staying on the GPU.
        let front = self.frozen.as_ref().map(|f| &f.plan);
        Ok(match (front, self.replicated) {
            (Some(front), false) => {
                self.train.step_queued_after(front, images, labels, lr)?;
                None
            }
            (None, false) => {
                self.train.step_queued(images, labels, lr)?;
                None
            }
            (Some(front), true) => Some(
                self.train
                    .step_replicated_after(front, images, labels, lr, replicas)?,
            ),
            (None, true) => Some(self.train.step_replicated(images, labels, lr, replicas)?),
        })
    }

    /// The trained part's parameters and optimizer state, flat in name order (what rank 0
    /// broadcasts so that every replica starts from the same point).
    pub fn flat_state(&self) -> anyhow::Result<Vec<f32>> {
        let params = self.params.read()?;
        let state = self.train.read_opt_state()?;
        Ok(params
            .iter()
            .chain(state.iter())
            .flat_map(|(_, _, values)| values.iter().copied())
            .collect())
    }

    /// Loads what `flat_state` returned on another replica.
    pub fn load_flat_state(&self, flat: &[f32]) -> anyhow::Result<()> {
        let mut params = self.params.read()?;
        let mut state = self.train.read_opt_state()?;
        let mut rest = flat;
        for (_, values) in params.values_mut().chain(state.values_mut()) {
            anyhow::ensure!(
                rest.len() >= values.len(),
                "the broadcast state is too short"
            );
            let (mine, tail) = rest.split_at(values.len());
            values.copy_from_slice(mine);
            rest = tail;
        }
        anyhow::ensure!(rest.is_empty(), "the broadcast state is too long");
        self.restore(&params, &state)
    }

    /// Makes every replica's batch-norm running statistics their average (they are
    /// gathered per replica from its own batches).
    pub fn average_running_stats(&self, replicas: &dyn Replicas) -> anyhow::Result<()> {
        if replicas.count() == 1 {
            return Ok(());
        }
        let mut params = self.params.read()?;
        let is_running =
            |name: &str| name.ends_with(".running_mean") || name.ends_with(".running_var");
        let local: Vec<f64> = params
            .iter()
            .filter(|(name, _, _)| is_running(name))
            .flat_map(|(_, _, values)| values.iter().map(|&v| v as f64))
            .collect();
        let mut total = replicas.sum(&local)?.into_iter();
        let count = replicas.count() as f64;
        for (_, values) in params.values_mut().filter(|(name, _)| is_running(name)) {
            for (value, sum) in values.iter_mut().zip(total.by_ref()) {
                *value = (sum / count) as f32;
            }
        }
        self.params.load(&params)?;
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

    /// Loads the whole network's `weights` into the evaluation plan, folded.
    pub fn prepare_eval(&self, weights: &ParamStore) -> anyhow::Result<()> {
        self.eval
            .load_params(&fold_batchnorm(weights, self.bn_eps)?)?;
        Ok(())
    }

    /// Restores the trained part's weights and optimizer state from a checkpoint.
    pub fn restore(&self, params: &ParamStore, optimizer_state: &ParamStore) -> anyhow::Result<()> {
        self.params.load(&params.for_graph(&self.trained_graph))?;
        self.train.load_opt_state(optimizer_state)?;
        Ok(())
    }
}

fn train_config(
    options: &TrainOptions,
    graph: &crate::graph::GraphBuilder,
    replicas: usize,
) -> TrainConfig {
    let weight_decay = graph
        .params()
        .iter()
        .map(|p| (p.name.clone(), options.optimizer.weight_decay_for(p)))
        .filter(|(_, d)| *d != 0.0)
        .collect();
    TrainConfig {
        settings: TrainSettings {
            bn_momentum: options.bn_momentum,
            synced_replicas: if options.parallel.sync_bn {
                replicas
            } else {
                1
            },
        },
        update: Some(options.optimizer.rule()),
        weight_decay,
        input_grad: false,
        gradient_bucket_bytes: (replicas > 1).then_some(options.parallel.bucket_bytes),
    }
}
