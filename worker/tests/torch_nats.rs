//! Real inference through all of Baton (needs `--features torch`, i.e. `make test-torch`): a
//! nats-server, the `baton` scheduler and a `baton-worker run --backend torch` process, and two
//! clients on their own connections. What comes back equals a direct tch forward of the same
//! seeded model on the same inputs, at batch size 1 and in batches that mix both clients'
//! requests (checked on the plans the dispatcher sends and the inputs the gateway ships).
#![cfg(feature = "torch")]

use std::collections::{BTreeSet, HashMap};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use baton_common::client::{Client, ClientOptions};
use baton_common::control::{BatchInputs, BatchPlanMsg};
use baton_common::subjects;
use baton_common::testing::NatsServer;
use baton_common::wire::{self, DType, InferRequest, Status, Tensor};
use futures::StreamExt;
use tch::nn::ModuleT;

const SHAPE: [u64; 3] = [3, 32, 32];
/// The worker CLI's seed for random weights (`TorchConfig::default().seed`).
const SEED: i64 = 42;
const WORKER: &str = "torch-0";

/// Kills the processes however the test ends.
struct Procs(Vec<Child>);

impl Drop for Procs {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn direct_forward(net: &impl ModuleT, request: &Tensor) -> Vec<f32> {
    let values = request.to_f32_vec().unwrap();
    let dims: Vec<i64> = std::iter::once(1).chain(SHAPE.iter().map(|&d| d as i64)).collect();
    let x = tch::Tensor::from_slice(&values).reshape(&dims);
    let y = tch::no_grad(|| net.forward_t(&x, false)).flatten(0, -1);
    Vec::<f32>::try_from(&y).unwrap()
}

fn image(seed: u32) -> Tensor {
    let n = SHAPE.iter().product::<u64>() as u32;
    let values: Vec<f32> = (0..n)
        .map(|i| ((i.wrapping_mul(2654435761) ^ seed.wrapping_mul(40503)) % 2000) as f32 / 1000.0 - 1.0)
        .collect();
    Tensor::from_f32(SHAPE.to_vec(), &values)
}

fn assert_close(got: &[Tensor], want: &[f32], what: &str) {
    assert_eq!(got.len(), 1, "{what}: one output tensor");
    assert_eq!(got[0].dtype, DType::F32, "{what}");
    assert_eq!(got[0].shape, vec![want.len() as u64], "{what}");
    let got = got[0].to_f32_vec().unwrap();
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= 1e-4 + 1e-4 * w.abs(),
            "{what}, element {i}: {g} vs {w}"
        );
    }
}

async fn client(url: &str, name: &str) -> Client {
    ClientOptions::new()
        .name(name)
        .grace(Duration::from_secs(5))
        .connect(url)
        .await
        .expect("connect")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn results_through_baton_equal_a_direct_forward_alone_and_in_mixed_batches() {
    let nats = NatsServer::start().expect("nats-server (run deploy/setup/nats-server.sh)");
    let url = nats.url();
    let mut procs = Procs(vec![]);
    procs.0.push(
        baton_common::testing::scheduler_command(baton_common::testing::workspace_binary("baton"), &url)
            .spawn()
            .expect("start baton scheduler"),
    );
    procs.0.push(
        Command::new(env!("CARGO_BIN_EXE_baton-worker"))
            .args(["run", "--backend", "torch", "--nats", &url, "--id", WORKER])
            .args(["--model", "resnet18=resnet18", "--max-batch", "4", "--threads", "2"])
            .args(["--input-shape", "3,32,32", "--input-dtype", "f32"])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .expect("start baton-worker"),
    );

    // The plans the dispatcher sends the worker and the inputs the gateway ships it, to see
    // which clients' requests shared a batch (the inputs carry the clients' request ids).
    let watcher = async_nats::connect(&url).await.unwrap();
    let mut plans = watcher.subscribe(subjects::worker_plans(WORKER)).await.unwrap();
    let mut inputs = watcher.subscribe(subjects::worker_inputs(WORKER)).await.unwrap();
    let a = client(&url, "camera-a").await;
    let b = client(&url, "camera-b").await;

    // Up once a request is served (the worker measures a quick profile while it loads).
    let start = Instant::now();
    loop {
        match a.infer("resnet18", vec![image(0)], Some(Duration::from_secs(2))).await {
            Ok(_) => break,
            Err(e) => assert!(
                start.elapsed() < Duration::from_secs(120),
                "resnet18 not served after 2 min: {e}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    tch::manual_seed(SEED);
    let vs = tch::nn::VarStore::new(tch::Device::Cpu);
    let net = tch::vision::resnet::resnet18(&vs.root(), 1000);

    // Batch size 1: one request alone.
    let single = image(1);
    let out = a
        .infer("resnet18", vec![single.clone()], Some(Duration::from_secs(5)))
        .await
        .expect("single request");
    assert_close(&out.outputs, &direct_forward(&net, &single), "single request");
    while let Ok(Some(_)) = tokio::time::timeout(Duration::from_millis(100), plans.next()).await {}
    while let Ok(Some(_)) = tokio::time::timeout(Duration::from_millis(100), inputs.next()).await {}

    // Both clients, alternating 5 ms apart (sent at once, each connection's requests would
    // arrive together and deadline order would keep them apart), with a budget that lets the
    // scheduler defer and batch them.
    let n = 8u32;
    // Each request names its client in its id (`a-<i>`, `b-<i>`).
    let slo = Duration::from_millis(1500);
    let calls = (0..n).map(|i| {
        let (c, name) = if i % 2 == 0 { (a.clone(), "a") } else { (b.clone(), "b") };
        let img = image(100 + i);
        let req = InferRequest {
            id: Some(format!("{name}-{i}")),
            inputs: vec![img.clone()],
            slo_ms: Some(slo.as_secs_f64() * 1e3),
            priority: None,
        };
        async move {
            tokio::time::sleep(Duration::from_millis(5 * u64::from(i))).await;
            (img, c.send("resnet18", &req, slo).await)
        }
    });
    let results = futures::future::join_all(calls).await;
    for (i, (img, r)) in results.iter().enumerate() {
        let out = r.as_ref().unwrap_or_else(|e| panic!("request {i}: {e}"));
        assert_eq!(out.status, Status::Ok, "request {i}: {out:?}");
        assert_close(&out.outputs, &direct_forward(&net, img), &format!("request {i}"));
    }

    // Some batch held more than one request, from both clients.
    let mut sizes = vec![];
    while let Ok(Some(msg)) = tokio::time::timeout(Duration::from_millis(500), plans.next()).await {
        let plan: BatchPlanMsg = wire::decode(&msg.payload).expect("a plan");
        sizes.push(plan.len());
    }
    let mut clients: HashMap<_, BTreeSet<String>> = HashMap::new();
    while let Ok(Some(msg)) = tokio::time::timeout(Duration::from_millis(500), inputs.next()).await {
        let shipped: BatchInputs = wire::decode(&msg.payload).expect("inputs");
        let batch = clients.entry(shipped.batch_id).or_default();
        for item in shipped.items {
            let client = item.id.as_str().split('-').next().unwrap_or_default().to_string();
            batch.insert(client);
        }
    }
    let mixed = clients.values().any(|c| c.len() > 1);
    assert_eq!(sizes.iter().sum::<usize>(), n as usize, "plans {sizes:?}");
    assert!(mixed, "no batch mixed the two clients' requests: batch sizes {sizes:?}");
}
