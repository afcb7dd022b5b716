# Only in the tiny default (config key `synthetic`): the base model and data from nothing.
if "synthetic" in config:
    SYN = config["synthetic"]

    # Raw alpaca and ShareGPT JSON, held-out splits, pretraining text, inference prompts.
    rule synthetic_data:
        output:
            alpaca="synthetic/alpaca.json",
            sharegpt="synthetic/sharegpt.json",
            heldout="synthetic/heldout.json",
            heldout_sharegpt="synthetic/heldout_sharegpt.json",
            pretrain="synthetic/pretrain.txt",
            examples="synthetic/input_examples.txt",
            references="synthetic/references.txt",
            mmlu=directory("synthetic/mmlu"),
        params:
            seed=SYN["seed"],
            n_alpaca=SYN["n_alpaca"],
            n_sharegpt=SYN["n_sharegpt"],
            n_heldout=SYN["n_heldout"],
            n_heldout_sharegpt=SYN["n_heldout_sharegpt"],
            n_pretrain=SYN["n_pretrain"],
            n_examples=SYN["n_examples"],
            n_pretrain_mmlu=SYN["n_pretrain_mmlu"],
            mmlu_dev=SYN["mmlu"]["n_dev"],
            mmlu_test=SYN["mmlu"]["n_test"],
        log:
            run_path("logs/synthetic_data.log"),
        conda:
            "../envs/vicuna.yaml"
        shell:
            "make_synthetic_data.py --seed {params.seed}"
            " --n_alpaca {params.n_alpaca} --n_sharegpt {params.n_sharegpt}"
            " --n_heldout {params.n_heldout} --n_heldout_sharegpt {params.n_heldout_sharegpt}"
            " --n_pretrain {params.n_pretrain}"
            " --n_examples {params.n_examples} --n_pretrain_mmlu {params.n_pretrain_mmlu}"
            " --mmlu_dev {params.mmlu_dev} --mmlu_test {params.mmlu_test}"
            " --out_dir synthetic > {log} 2>&1"

    # A LLaMA-style tokenizer and a tiny LLaMA, pretrained briefly, saved in Meta's format.
    rule pretrain_base:
        input:
            pretrain=rules.synthetic_data.output.pretrain,
            alpaca=rules.synthetic_data.output.alpaca,
            sharegpt=rules.synthetic_data.output.sharegpt,
        output:
            tokenizer=config["base"]["tokenizer_model"],
            params=f"{config['base']['model_dir']}/params.json",
            weights=f"{config['base']['model_dir']}/consolidated.00.pth",
        params:
            model_dir=lambda w, output: Path(output.params).parent,
            vocab_size=SYN["vocab_size"],
            dim=SYN["model"]["dim"],
            n_layers=SYN["model"]["n_layers"],
            n_heads=SYN["model"]["n_heads"],
            multiple_of=SYN["model"]["multiple_of"],
            norm_eps=SYN["model"]["norm_eps"],
            steps=SYN["pretrain"]["steps"],
            batch_size=SYN["pretrain"]["batch_size"],
            learning_rate=SYN["pretrain"]["learning_rate"],
            seq_len=SYN["pretrain"]["seq_len"],
            seed=SYN["seed"],
        log:
            run_path("logs/pretrain_base.log"),
        benchmark:
            run_path("benchmarks/pretrain_base.tsv")
        conda:
            "../envs/vicuna.yaml"
        shell:
            "pretrain_base.py --pretrain_text {input.pretrain}"
            " --tokenizer_texts {input.alpaca} {input.sharegpt} --vocab_size {params.vocab_size}"
            " --dim {params.dim} --n_layers {params.n_layers} --n_heads {params.n_heads}"
            " --multiple_of {params.multiple_of} --norm_eps {params.norm_eps}"
            " --steps {params.steps} --batch_size {params.batch_size}"
            " --learning_rate {params.learning_rate} --seq_len {params.seq_len}"
            " --seed {params.seed} --threads {threads}"
            " --tokenizer_model {output.tokenizer} --model_dir {params.model_dir} > {log} 2>&1"
