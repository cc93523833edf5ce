//! The torch backend against a direct tch forward of the same model (needs `--features torch`,
//! i.e. `make test-torch`). Small inputs (3×32×32) keep each test to seconds on two cores.
#![cfg(feature = "torch")]

use baton_common::profile::Profile;
use baton_common::wire::{DType, Tensor};
use baton_worker::backend::{Backend, InputSpec, RequestError};
use baton_worker::profiler::{self, synthetic_request};
use baton_worker::torch::{ModelSource, TorchBackend, TorchConfig, TorchModelSpec};
use tch::nn::ModuleT;

const SHAPE: [u64; 3] = [3, 32, 32];

/// libtorch's random generator is process-global: models built with the
/// same seed on two test threads at once would interleave draws and differ.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn input() -> Vec<InputSpec> {
    vec![InputSpec {
        dtype: DType::F32,
        shape: SHAPE.to_vec(),
    }]
}

fn config() -> TorchConfig {
    TorchConfig {
        threads: 2,
        seed: 7,
        ..TorchConfig::default()
    }
}

fn backend(arch: &str, max_batch: u32, profile: Option<Profile>) -> TorchBackend {
    let spec = TorchModelSpec {
        name: "m".into(),
        source: ModelSource::parse(arch),
        inputs: input(),
        max_batch,
        profile,
    };
    TorchBackend::new(&config(), [spec]).unwrap()
}

fn placeholder(max_batch: u32) -> Option<Profile> {
    Some(Profile::from_spec("sleep#1,1,0,0", max_batch).unwrap())
}

/// The same resnet18 built directly with tch, seeded as the backend seeds it.
fn direct_resnet18() -> (tch::nn::VarStore, impl ModuleT) {
    tch::manual_seed(config().seed);
    let vs = tch::nn::VarStore::new(tch::Device::Cpu);
    let net = tch::vision::resnet::resnet18(&vs.root(), 1000);
    (vs, net)
}

fn direct_forward(net: &impl ModuleT, request: &[Tensor]) -> Vec<f32> {
    let values = request[0].to_f32_vec().unwrap();
    let dims: Vec<i64> = std::iter::once(1).chain(SHAPE.iter().map(|&d| d as i64)).collect();
    let x = tch::Tensor::from_slice(&values).reshape(&dims);
    let y = tch::no_grad(|| net.forward_t(&x, false)).flatten(0, -1);
    Vec::<f32>::try_from(&y).unwrap()
}

fn assert_close(got: &Tensor, want: &[f32]) {
    assert_eq!(got.dtype, DType::F32);
    assert_eq!(got.shape, vec![want.len() as u64]);
    let got = got.to_f32_vec().unwrap();
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!((g - w).abs() <= 1e-4 + 1e-4 * w.abs(), "element {i}: {g} vs {w}");
    }
}

#[test]
fn outputs_equal_a_direct_forward_at_batch_one_and_mixed_batches() {
    let _serial = serial();
    let mut b = backend("resnet18", 4, placeholder(4));
    let (_vs, net) = direct_resnet18();
    let requests: Vec<Vec<Tensor>> = (0..3).map(|i| synthetic_request(&input(), 100 + i)).collect();
    let want: Vec<Vec<f32>> = requests.iter().map(|r| direct_forward(&net, r)).collect();

    let one = b.run_batch("m", &requests[..1]).unwrap();
    assert_close(&one[0].as_ref().unwrap()[0], &want[0]);

    // Three different clients' requests in one batch: each gets its own answer back.
    let three = b.run_batch("m", &requests).unwrap();
    assert_eq!(three.len(), 3);
    for (got, want) in three.iter().zip(&want) {
        assert_close(&got.as_ref().unwrap()[0], want);
    }
    assert_ne!(three[0], three[1]);
}

#[test]
fn a_wrong_shape_is_a_bad_request_and_the_others_still_run() {
    let _serial = serial();
    let mut b = backend("resnet18", 4, placeholder(4));
    let (_vs, net) = direct_resnet18();
    let good0 = synthetic_request(&input(), 1);
    let good2 = synthetic_request(&input(), 2);
    let wrong = vec![Tensor::from_f32(vec![3, 16, 16], &[0.5; 3 * 16 * 16])];
    let out = b.run_batch("m", &[good0.clone(), wrong, good2.clone()]).unwrap();
    assert!(
        matches!(out[1], Err(RequestError::Mismatch { index: 0, .. })),
        "{:?}",
        out[1]
    );
    assert_close(&out[0].as_ref().unwrap()[0], &direct_forward(&net, &good0));
    assert_close(&out[2].as_ref().unwrap()[0], &direct_forward(&net, &good2));

    // Only bad requests: nothing runs, every one is answered.
    let out = b.run_batch("m", &[vec![]]).unwrap();
    assert_eq!(out[0], Err(RequestError::Arity { expected: 1, got: 0 }));
    assert!(b.run_batch("m", &vec![good0; 5]).is_err(), "beyond max batch");
}

#[test]
fn the_profiler_measures_a_non_decreasing_profile() {
    let _serial = serial();
    // No profile given: the backend measures a quick one at load and announces it.
    let mut b = backend("mobilenet_v2", 3, None);
    let announced = &b.models()[0].profile;
    assert_eq!(announced.max_batch(), 3);
    assert!(announced.forward_mean_us(1).unwrap() > 0.0);

    let p = profiler::measure(&mut b, "m", 3, 1, 3, |_, _| {}).unwrap();
    assert_eq!(p.batches().len(), 3);
    let means: Vec<f64> = p.batches().iter().map(|e| e.mean_us).collect();
    assert!(means[0] > 0.0 && means.windows(2).all(|w| w[0] <= w[1]), "{means:?}");
    // The profile round-trips through the file format the scheduler reads.
    let file = std::env::temp_dir().join(format!("baton-torch-profile-{}.toml", std::process::id()));
    p.save(&file).unwrap();
    assert_eq!(Profile::load(&file).unwrap(), p);
    std::fs::remove_file(&file).ok();
}

fn temp_path(name: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("baton-torch-{}-{name}", std::process::id()))
}

#[test]
fn weights_from_a_file_replace_the_seeded_ones() {
    let _serial = serial();
    // Weights made by another "training run": resnet18 seeded differently, saved as a VarStore.
    let file = temp_path("weights.ot");
    tch::manual_seed(11);
    let trained_vs = tch::nn::VarStore::new(tch::Device::Cpu);
    let trained = tch::vision::resnet::resnet18(&trained_vs.root(), 1000);
    trained_vs.save(&file).unwrap();

    let mut b = backend(&format!("resnet18@{}", file.display()), 2, placeholder(2));
    let (_vs, seeded) = direct_resnet18();
    let request = synthetic_request(&input(), 5);
    let out = b.run_batch("m", std::slice::from_ref(&request)).unwrap();
    let got = &out[0].as_ref().unwrap()[0];
    assert_close(got, &direct_forward(&trained, &request));
    let from_seed = direct_forward(&seeded, &request);
    assert!(
        got.to_f32_vec()
            .unwrap()
            .iter()
            .zip(&from_seed)
            .any(|(g, s)| (g - s).abs() > 1e-3),
        "the file's weights were not used"
    );
    std::fs::remove_file(&file).ok();

    // A missing file is a load error naming the model and the file.
    let spec = TorchModelSpec {
        name: "m".into(),
        source: ModelSource::parse("resnet18@/nonexistent/weights.ot"),
        inputs: input(),
        max_batch: 1,
        profile: placeholder(1),
    };
    let e = TorchBackend::new(&config(), [spec]).unwrap_err().to_string();
    assert!(e.contains("`m`") && e.contains("/nonexistent/weights.ot"), "{e}");
}

/// The Python interpreter of the libtorch venv (`deploy/setup/libtorch.sh`), which has the
/// `torch` package the wheel's libtorch came with.
fn venv_python() -> std::path::PathBuf {
    let venv = std::env::var_os("VIRTUAL_ENV")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            std::path::PathBuf::from(std::env::var_os("HOME").expect("HOME")).join(".cache/baton/torch-venv")
        });
    let python = venv.join("bin/python");
    assert!(
        python.exists(),
        "{} is missing: run deploy/setup/libtorch.sh (make test does)",
        python.display()
    );
    python
}

/// A TorchScript module written by PyTorch itself, and its outputs as PyTorch computed them.
const SCRIPT: &str = r#"
import json, sys, torch
torch.manual_seed(3)
class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3)
        self.fc = torch.nn.Linear(4, 5)
    def forward(self, x):
        return self.fc(torch.relu(self.conv(x)).mean(dim=(2, 3)))
m = torch.jit.script(Net().eval())
m.save(sys.argv[1])
x = torch.linspace(-1, 1, 3 * 3 * 8 * 8).reshape(3, 3, 8, 8)
with torch.no_grad():
    y = m(x)
json.dump({"x": x.flatten().tolist(), "y": y.tolist()}, open(sys.argv[2], "w"))
"#;

#[test]
fn a_torchscript_file_from_pytorch_gives_pytorchs_outputs() {
    let _serial = serial();
    let (script, model, expected) = (
        temp_path("make_net.py"),
        temp_path("net.pt"),
        temp_path("expected.json"),
    );
    // From a file, not `python -c`: torch.jit.script reads the class's source.
    std::fs::write(&script, SCRIPT).unwrap();
    let status = std::process::Command::new(venv_python())
        .arg(&script)
        .arg(&model)
        .arg(&expected)
        .status()
        .expect("run python");
    assert!(status.success(), "python could not script the model");
    let json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&expected).unwrap()).unwrap();
    let x: Vec<f32> = json["x"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap() as f32)
        .collect();
    let y: Vec<Vec<f32>> = json["y"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| {
            row.as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap() as f32)
                .collect()
        })
        .collect();

    let spec = TorchModelSpec {
        name: "net".into(),
        source: ModelSource::parse(&model.display().to_string()),
        inputs: vec![InputSpec {
            dtype: DType::F32,
            shape: vec![3, 8, 8],
        }],
        max_batch: 4,
        profile: placeholder(4),
    };
    assert!(matches!(spec.source, ModelSource::TorchScript(_)));
    let mut b = TorchBackend::new(&config(), [spec]).unwrap();
    // Three requests, one image each, in one batch; and the middle one alone.
    let requests: Vec<Vec<Tensor>> = x
        .chunks(3 * 8 * 8)
        .map(|c| vec![Tensor::from_f32(vec![3, 8, 8], c)])
        .collect();
    let out = b.run_batch("net", &requests).unwrap();
    for (got, want) in out.iter().zip(&y) {
        assert_close(&got.as_ref().unwrap()[0], want);
    }
    let alone = b.run_batch("net", &requests[1..2]).unwrap();
    assert_close(&alone[0].as_ref().unwrap()[0], &y[1]);
    for f in [script, model, expected] {
        std::fs::remove_file(f).ok();
    }
}
