mod assets;
mod llm;
mod real;
mod tiny;
