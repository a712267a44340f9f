from setuptools import find_packages, setup


def readme():
    with open('README.md', encoding='utf-8') as f:
        return f.read()


setup(
    name='capdistill',
    version='0.1.0',
    description='Knowledge distillation for video captioning, on mmengine',
    long_description=readme(),
    long_description_content_type='text/markdown',
    packages=find_packages(exclude=('configs', 'tools', 'tests', 'projects')),
    python_requires='>=3.9',
    install_requires=[
        'torch>=2.1',
        'mmengine>=0.10.4',
        'open_clip_torch>=2.24',
        'pycocoevalcap>=1.2',
        'einops>=0.7',
        'timm>=0.9',
        'av>=12',
        'safetensors>=0.4',
        'numpy>=1.24',
        'tqdm>=4.60',
        'lemminflect>=0.2.3',  # English lexicon for the offline concept tagger
    ],
    extras_require={
        'tests': ['pytest>=7', 'hypothesis>=6.80', 'h5py>=3.8', 'matplotlib>=3.5',
                  'scikit-video>=1.1.11', 'onnx>=1.16', 'onnxruntime>=1.18',
                  'scipy>=1.10',  # golden values of the divergence tests
                  'tensorboard>=2.14',  # the TensorBoard logging test reads event files
                  'pytest-xdist>=3.5'],  # two test processes (pytest.ini)
        'analysis': ['matplotlib>=3.5'],
        'tensorboard': ['tensorboard>=2.14'],  # visualizer.vis_backends TensorboardVisBackend
        'h5': ['h5py>=3.8'],
        'deploy': ['onnx>=1.16', 'onnxruntime>=1.18'],  # tools/deploy.py, ONNX back-end
    },
    license='Apache-2.0',
)
