"""What a run costs: model tokens (`pricing`) and GPU time (`gpu_cost`)."""
