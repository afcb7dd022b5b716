"""Publishing a release: its model card (README.md in the Hugging Face Hub's layout), written from
the run's own files, and the folder a user uploads as it is (`run_files`, `releases`, `card`,
`hub_folder`)."""
