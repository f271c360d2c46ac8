"""Image-prompt plugin: prompts for diffusion tools and an offline visual sketch."""
