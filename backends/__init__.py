"""Concrete dLLM policies (LLaDA, Dream) and execution engines."""
