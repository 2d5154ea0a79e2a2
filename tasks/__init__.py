"""Task plugins: data, prompts, rewards, metrics."""
