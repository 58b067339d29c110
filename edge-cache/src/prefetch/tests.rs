use super::*;

fn blob(hex: char, size: u64) -> Descriptor {
    serde_json::from_value(serde_json::json!({
        "mediaType": "application/octet-stream",
        "digest": format!("sha256:{}", hex.to_string().repeat(64)),
        "size": size,
    }))
    .expect("descriptor")
}

#[test]
fn replanning_a_resumed_job_keeps_finished_layers() {
    let blobs = [blob('a', 10), blob('b', 20), blob('c', 30)];
    let first = plan_layers(&[], &blobs);
    assert!(first.iter().all(|l| l.bytes_done == 0));
    let mut previous = first;
    previous[0].state = JobState::Done;
    previous[0].bytes_done = 10;
    previous[1].state = JobState::Running;
    previous[1].bytes_done = 7;
    let again = plan_layers(&previous, &blobs);
    let done: Vec<u64> = again.iter().map(|l| l.bytes_done).collect();
    // A committed layer keeps its bytes; a partial one restarts from what
    // its fill really has on disk, which the fill reports.
    assert_eq!(done, [10, 0, 0]);
    assert!(again.iter().all(|l| l.state == JobState::Pending));

    let mut job = Job {
        id: "j".into(),
        state: JobState::Running,
        pin: false,
        bytes_done: 17,
        bytes_total: 60,
        error: None,
        images: vec![ImageProgress {
            image: "p/a:1".into(),
            digest: None,
            state: JobState::Running,
            bytes_done: 17,
            bytes_total: 60,
            error: None,
            layers: again,
            external_layers: vec![],
        }],
        platforms: None,
        created: 0,
        updated: 0,
        report: false,
    };
    recount(&mut job, 0);
    assert_eq!((job.bytes_done, job.images[0].bytes_done), (10, 10));
}
