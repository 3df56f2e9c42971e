"""What the seed's activation argument is about, measured during a training: gradient norms per
layer, dead units, saturation and the cost of a step (a Lightning callback, `diagnostics=on`)."""
