//! Named parameter tensors held on the CPU: initialisation, loading into and reading out
//! of a plan, and (later) checkpoints.

use super::builder::GraphBuilder;
use super::node::ParamInfo;
use crate::ops::ParamRole;
use rand::SeedableRng;
use rand_distr::{Distribution, Normal};
use std::collections::HashMap;

/// Parameters by name, in the graph's order.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ParamStore {
    entries: Vec<(String, Vec<usize>, Vec<f32>)>,
    index: HashMap<String, usize>,
}

impl ParamStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// Inserts or replaces a tensor.
    pub fn insert(&mut self, name: &str, shape: Vec<usize>, values: Vec<f32>) {
        match self.index.get(name) {
            Some(&i) => self.entries[i] = (name.to_string(), shape, values),
            None => {
                self.index.insert(name.to_string(), self.entries.len());
                self.entries.push((name.to_string(), shape, values));
            }
        }
    }

    pub fn get(&self, name: &str) -> Option<&[f32]> {
        self.index.get(name).map(|&i| self.entries[i].2.as_slice())
    }

    pub fn get_mut(&mut self, name: &str) -> Option<&mut Vec<f32>> {
        self.index.get(name).map(|&i| &mut self.entries[i].2)
    }

    pub fn shape(&self, name: &str) -> Option<&[usize]> {
        self.index.get(name).map(|&i| self.entries[i].1.as_slice())
    }

    /// (name, shape, values) in insertion order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &[usize], &[f32])> {
        self.entries
            .iter()
            .map(|(n, s, v)| (n.as_str(), s.as_slice(), v.as_slice()))
    }

    /// (name, values) in insertion order, for changing values in place.
    pub fn values_mut(&mut self) -> impl Iterator<Item = (&str, &mut Vec<f32>)> {
        self.entries.iter_mut().map(|(n, _, v)| (n.as_str(), v))
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The tensors named like `graph`'s parameters (those present here), in the graph's order:
    /// the part of a whole network's parameters that a slice of it uses.
    pub fn for_graph(&self, graph: &GraphBuilder) -> ParamStore {
        let mut part = ParamStore::new();
        for info in graph.params() {
            if let (Some(shape), Some(values)) = (self.shape(&info.name), self.get(&info.name)) {
                part.insert(&info.name, shape.to_vec(), values.to_vec());
            }
        }
        part
    }

    /// Inserts (or replaces) every tensor of `other`.
    pub fn extend(&mut self, other: &ParamStore) {
        for (name, shape, values) in other.iter() {
            self.insert(name, shape.to_vec(), values.to_vec());
        }
    }

    /// Fresh parameters for a graph: He-normal kernels (fan-in, as for ReLU networks),
    /// zero biases and shifts, unit BN scales and variances, zero means. Seeded, so the
    /// same seed gives the same network.
    pub fn initialize(graph: &GraphBuilder, seed: u64) -> Self {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let mut store = ParamStore::new();
        for info in graph.params() {
            store.insert(
                &info.name,
                info.shape.clone(),
                initial_values(info, &mut rng),
            );
        }
        store
    }
}

fn initial_values(info: &ParamInfo, rng: &mut rand::rngs::StdRng) -> Vec<f32> {
    let len = info.len();
    match info.role {
        ParamRole::Weight { fan_in, .. } => {
            let std = (2.0 / fan_in.max(1) as f32).sqrt();
            let normal = Normal::new(0.0, std).expect("a positive, finite standard deviation");
            (0..len).map(|_| normal.sample(rng)).collect()
        }
        ParamRole::Gamma | ParamRole::RunningVar => vec![1.0; len],
        ParamRole::Bias | ParamRole::Beta | ParamRole::RunningMean => vec![0.0; len],
    }
}
